"""What every certification test of memkv's own backends asserts of the document it reads."""

from __future__ import annotations

from memkv.conformance.per_backend import Certification


def assert_certified(certification: Certification, backend: str, claims: list[str]) -> dict:
    """CERTIFIED, claiming exactly `claims`, every claimed profile passing with nothing failed; returns the doc."""
    doc = certification.doc
    assert doc["target"]["capabilities"]["backend"] == backend
    assert doc["verdict"] == "CERTIFIED", (doc["blocking"], [t["message"] for t in doc["tests"]
                                                            if t["status"] != "pass"])
    assert doc["claimed_profiles"] == claims
    for name in claims:
        profile = doc["profiles"][name]
        assert profile["status"] == "pass" and profile["fail"] == 0 and profile["error"] == 0, profile
    return doc
