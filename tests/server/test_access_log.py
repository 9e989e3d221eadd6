"""`memkv serve --access-log`: trace lines `memkv plan` reads, no payloads or names, rotated (MKV-CAP-009)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import memkv
from memkv.plan import SimConfig, simulate
from memkv.plan.workload import read_trace
from memkv.server.access_log import AccessLog
from memkv.server.testing import in_process_server, write_keys_file
from memkv.transport import PutItem

NAMESPACE = "secret-team"


@pytest.mark.requirement("MKV-CAP-009")
def test_lookups_are_logged_as_a_plannable_trace(tmp_path: Path) -> None:
    creds = write_keys_file(tmp_path / "keys.yaml", {NAMESPACE: [("w", "write")]})
    log_path = tmp_path / "access.jsonl"
    srv = in_process_server(str(tmp_path / "data"), str(tmp_path / "keys.yaml"), admin_listen="off",
                            access_log=str(log_path))
    keys = [bytes([i]) * 16 for i in range(1, 5)]
    payload = b"PAYLOAD-BYTES-" * 100
    try:
        with memkv.connect(f"memkv+tcp://{srv.address[0]}:{srv.address[1]}", namespace=NAMESPACE,
                           key=creds["w"]) as t:
            t.lookup(keys[:3])
            t.put([PutItem(k, payload) for k in keys[:3]])
            t.lookup(keys[:3], lease_ms=1000)
            t.lookup(keys)
    finally:
        srv.shutdown()
    raw = log_path.read_bytes()
    assert b"PAYLOAD" not in raw and NAMESPACE.encode() not in raw
    assert not any(k.hex().encode() in raw or k in raw for k in keys)
    requests = list(read_trace(str(log_path)))
    assert [len(r.hash_ids) for r in requests] == [3, 3, 4]
    assert requests[0].hash_ids == requests[1].hash_ids == requests[2].hash_ids[:3]
    assert len({json.loads(line)["namespace"] for line in raw.splitlines()}) == 1
    assert simulate(requests, SimConfig(None)).block_hits == 6


@pytest.mark.requirement("MKV-CAP-009")
def test_access_log_is_bounded_by_rotation(tmp_path: Path) -> None:
    path = tmp_path / "access.jsonl"
    log = AccessLog(str(path), max_bytes=4096)
    try:
        for i in range(500):
            log.lookup("ns", [i.to_bytes(16, "big")] * 8)
    finally:
        log.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["access.jsonl", "access.jsonl.1"]
    assert all(f.stat().st_size <= 4096 for f in files)
    assert list(read_trace(str(path)))  # still a readable trace after rotation
