"""The memkv server through the TCP client is CERTIFIED for every profile it claims.

The checks ran just before the first test, as `memkv/conformance/checks/...::test_x[tcp]` against a server
the suite started itself (target `memkv-serve`: 127.0.0.1, a free port, a generated pool of test
namespaces with read/write/admin keys; memkv/conformance/per_backend.py); the first test reads the
certification made of their results. A second test points the suite at a server that is already
running (`memkv+tcp://HOST:PORT?key_file=...`, the vendor case).
"""

from __future__ import annotations

import io
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers_certification import assert_certified

from memkv.conformance.per_backend import Certification
from memkv.conformance.runner import REGRESSION_SEED, Options, run
from memkv.conformance.target import load_target
from memkv.conformance.targets.server import NamespacePool, ServerTarget, write_pool_keys_file
from memkv.server.testing import ServerProcess

TCP_CLAIMS = ["admin", "core", "secure", "sessions", "shared", "wire"]


@pytest.mark.requirement("MKV-PRO-001")
@pytest.mark.memkv_backend("tcp")
def test_tcp_server_is_certified(memkv_certification: Certification) -> None:
    doc = assert_certified(memkv_certification, "tcp", TCP_CLAIMS)
    assert doc["regression_seed"] == REGRESSION_SEED and doc["examples"] == 25 and doc["steps"] == 40
    for name in TCP_CLAIMS:
        assert doc["profiles"][name]["skip"] == 0
    for name in ("secure", "admin"):
        assert doc["profiles"][name]["excluded"] == 0  # every MUST demonstrated, none excluded
    assert not doc["profiles"]["durable"]["claimed"]
    assert doc["requirements"]["MKV-WIRE-012"]["status"] == "pass"
    assert doc["requirements"]["MKV-ADM-008"]["status"] == "pass"
    report = memkv_certification.report_dir
    results = json.loads((report / "results.json").read_text())
    assert results["verdict"] == "CERTIFIED"
    assert "secret" not in json.dumps(results["target"]).lower()
    junit = ET.parse(report / "junit.xml").getroot()
    names = [case.get("name", "") for case in junit.iter("testcase")]
    assert any("MKV-NS-006" in n for n in names) and any("MKV-ADM-005" in n for n in names)
    assert "CERTIFIED" in (report / "report.html").read_text()


def test_running_server_target(tmp_path: Path) -> None:
    """The vendor case: a server started elsewhere, reached by URL with a pool keys file."""
    keys = tmp_path / "pool.yaml"
    write_pool_keys_file(str(keys), 96)
    assert oct(os.stat(keys).st_mode & 0o777) == "0o600"
    with ServerProcess(str(tmp_path / "data"), str(keys), extra=["--unit", "256KiB"]) as server:
        url = (f"memkv+tcp://{server.host}:{server.port}?key_file={keys}&data_dir={tmp_path / 'data'}"
               f"&admin_url={server.admin_url}")  # a free port was asked for: the admin API is not on port + 1
        target = load_target(url)
        assert isinstance(target, ServerTarget) and target.admin_url == server.admin_url
        assert isinstance(target.pool, NamespacePool) and len(target.pool.names) == 96
        assert {"secure", "admin"} <= set(target.capabilities().profiles)
        target.close()
        stream = io.StringIO()
        doc = run(Options(target=url, profiles="secure,admin", seed=1, examples=3, steps=10, stream=stream,
                          keyword="security or admin or namespaces or corrupted"))
        print(stream.getvalue()[-3000:])
        by_name = {t["name"]: t for t in doc["tests"]}
        assert by_name["test_roles_are_enforced_and_refusals_store_nothing"]["status"] == "pass"
        assert by_name["test_replayed_frames_are_refused"]["status"] == "pass"
        corrupted = [t for name, t in by_name.items() if name.startswith("test_corrupted_block_is_never_returned[")]
        assert len(corrupted) == 3 and all(t["status"] == "pass" for t in corrupted)  # data_dir= given
        assert by_name["test_invalidation_through_the_api_removes_the_blocks"]["status"] == "pass"
        # no launcher: the start-up checks cannot run against a server the suite did not start
        assert by_name["test_keys_files_are_checked_at_start_up"]["status"] == "fail"
        assert "Target.launch" in by_name["test_keys_files_are_checked_at_start_up"]["message"]
        assert doc["verdict"] == "FAILED"
        with pytest.raises(Exception, match="pool of test namespaces"):
            load_target(f"memkv+tcp://{server.host}:{server.port}?key=a:{'00' * 32}")
