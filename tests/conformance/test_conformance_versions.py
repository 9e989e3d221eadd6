"""A target is certified against the spec version it declares (spec/CHANGELOG.md, "How a target declares
its version"): requirements a later minor added are not applicable to it, and its report says which
version it was checked against."""

from __future__ import annotations

import io
from typing import Any

import pytest
import yaml

from memkv.conformance.requirements import (
    REQUIREMENTS_PATH,
    declared_version,
    requirements,
    spec_version,
    version_tuple,
)
from memkv.conformance.runner import Options, run

req = pytest.mark.requirement

SPEC_1_0 = {"MKV-ADM": (1, 8), "MKV-BLK": (1, 7), "MKV-CAP": (1, 5), "MKV-DUR": (1, 7), "MKV-ERR": (1, 2),
            "MKV-INV": (1, 7), "MKV-KEY": (1, 7), "MKV-NS": (1, 8), "MKV-OPS": (1, 12), "MKV-PRO": (1, 1),
            "MKV-SES": (1, 9), "MKV-WIRE": (1, 25)}
"""The requirements of spec 1.0, released and frozen: every later one carries `since`."""


def _certify(target: str, *ids: str) -> dict[str, Any]:
    return run(Options(target=target, select=ids, certify=True, seed=1, quiet=True, stream=io.StringIO(),
                       max_shrink_time=5))


def test_since_names_the_version_that_added_each_requirement() -> None:
    entries = yaml.safe_load(REQUIREMENTS_PATH.read_text(encoding="utf-8"))["requirements"]
    without = {e["id"] for e in entries if "since" not in e}
    assert without == {f"{area}-{n:03d}" for area, (first, last) in SPEC_1_0.items() for n in range(first, last + 1)}
    suite = version_tuple(spec_version())
    assert all((1, 1) <= version_tuple(e["since"]) <= suite for e in entries if "since" in e)


def test_the_declared_version_is_read_as_the_suite_can_hold_a_target_to_it() -> None:
    assert declared_version("1.1") == (1, 1) and declared_version(spec_version()) == version_tuple(spec_version())
    # newer than the suite, another major, or unreadable: every requirement applies
    assert declared_version("1.99") is None and declared_version("2.0") is None and declared_version("one") is None
    inv8 = requirements()["MKV-INV-008"]
    assert not inv8.applies_to((1, 1)) and inv8.applies_to((1, 2)) and inv8.applies_to(None)


@req("MKV-VER-001", "MKV-PRO-001")
def test_a_1_1_target_is_not_held_to_what_1_2_added() -> None:
    doc = _certify("memkv.conformance.targets.older:file?version=1.1", "MKV-INV-008", "MKV-INV-002")
    assert (doc["checked_against"], doc["declared_spec_version"]) == ("1.1", "1.1")
    inv8, inv2 = doc["requirements"]["MKV-INV-008"], doc["requirements"]["MKV-INV-002"]
    assert (inv8["applicable"], inv8["status"], inv8["failures"]) == (False, "skip", [])  # no MKV-PRO-001 skip failure
    assert inv2["status"] == "pass"  # the state machine follows the 1.1 rule of invalidation by prefix
    core_1_2 = [r for r in requirements().values() if r.profile == "core" and r.level == "MUST" and r.since == "1.2"]
    assert doc["profiles"]["core"]["not_applicable"] == len(core_1_2) > 0
    assert "MKV-INV-008" not in doc["blocking"]


@req("MKV-VER-001", "MKV-INV-008")
def test_a_target_declaring_1_2_with_1_1_behaviour_fails_what_1_2_added() -> None:
    doc = _certify("memkv.conformance.targets.older:file?version=1.2&behaves=1.1", "MKV-INV-008")
    assert doc["checked_against"] == "1.2" and doc["requirements"]["MKV-INV-008"]["status"] == "fail"
    assert doc["verdict"] == "NOT CERTIFIED"


def test_an_unreadable_version_is_refused_before_the_run() -> None:
    doc = _certify("memkv.conformance.targets.older:file?version=latest", "MKV-INV-008")
    assert doc["verdict"] == "ERROR" and "latest" in (doc["setup_error"] or "")
