"""The memkv server through the NIXL client is CERTIFIED for every profile it claims.

The suite starts the server itself with `--nixl on`; UCX is forced onto TCP in both processes
(the CI machine has no RDMA) and the client runs in strict mode (MEMKV_TRANSPORT=nixl), so a
silent fall-back to the TCP data path would fail instead of certifying the wrong thing.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from report_dirs import report_dir

from memkv.conformance.runner import Options, run
from memkv.nixl.support import availability

NIXL_OK, NIXL_REASON = availability()
NIXL_CLAIMS = ["admin", "core", "nixl", "secure", "sessions", "shared", "wire"]


@pytest.mark.skipif(not NIXL_OK, reason=f"NIXL unavailable: {NIXL_REASON}")
@pytest.mark.requirement("MKV-PRO-001")
def test_nixl_backend_is_certified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UCX_TLS", "tcp")
    monkeypatch.setenv("MEMKV_TRANSPORT", "nixl")
    stream = io.StringIO()
    doc = run(Options(target="memkv-serve?scheme=memkv%2Bnixl&serve_args=--nixl%20on", certify=True,
                      report_dir=str(report_dir(tmp_path, "nixl")), stream=stream))
    print(stream.getvalue()[-2000:])
    assert doc["target"]["capabilities"]["backend"] == "nixl"
    assert doc["verdict"] == "CERTIFIED", (doc["blocking"], [t["message"] for t in doc["tests"]
                                                            if t["status"] != "pass"])
    assert doc["claimed_profiles"] == NIXL_CLAIMS
    for name in NIXL_CLAIMS:
        profile = doc["profiles"][name]
        assert profile["status"] == "pass" and profile["fail"] == 0 and profile["error"] == 0, profile
