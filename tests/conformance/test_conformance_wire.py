"""The vendor case for profile wire: `memkv conformance --target memkv+tcp://...` against a server
that is already running checks every wire MUST over its socket (MKV-PRO-001)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from memkv.conformance.runner import Options, run
from memkv.conformance.targets.server import write_pool_keys_file
from memkv.server.testing import ServerProcess


@pytest.mark.requirement("MKV-PRO-001")
def test_running_server_passes_the_wire_checks(tmp_path: Path) -> None:
    keys = tmp_path / "pool.yaml"
    write_pool_keys_file(str(keys), 96)
    with ServerProcess(str(tmp_path / "data"), str(keys), extra=["--unit", "256KiB"]) as server:
        url = (f"memkv+tcp://{server.host}:{server.port}?key_file={keys}&admin_url={server.admin_url}"
               "&launcher=memkv")  # launcher: the suite may start servers with short timeouts (MKV-WIRE-018)
        stream = io.StringIO()
        doc = run(Options(target=url, profiles="wire", seed=1, stream=stream, keyword="test_wire"))
        print(stream.getvalue()[-3000:])
    # node ids are relative to the run's rootdir, the folder above the conformance package
    wire = [t for t in doc["tests"] if t["nodeid"].startswith("conformance/checks/test_wire.py")]
    assert len(wire) >= 13
    assert [t["name"] for t in wire if t["status"] != "pass"] == []
    assert doc["profiles"]["wire"]["status"] == "pass" and doc["profiles"]["wire"]["fail"] == 0
