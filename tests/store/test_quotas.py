"""Per-namespace quotas of the engine and the server's keys file (MKV-NS-010)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_store import key, open_engine, payload

from memkv.errors import CapacityExceeded, ErrorCode, InvalidArgument, LimitExceeded
from memkv.server.keyring import KeyRing
from memkv.store.quotas import Quota, parse_quotas
from memkv.transport import PutItem

pytestmark = pytest.mark.requirement("MKV-NS-010")
KiB = 1024


def test_byte_quota_evicts_only_the_namespace_s_own_blocks(tmp_path: Path) -> None:
    engine = open_engine(tmp_path, capacity=8 * 1024 * KiB, unit=4 * KiB)
    try:
        engine.quotas = {"a": Quota(bytes=40 * KiB)}
        engine.put("b", [PutItem(key(100), payload(100, 30 * KiB))])
        for i in range(4):
            assert engine.put("a", [PutItem(key(i), payload(i, 10 * KiB))])[0].ok
        assert engine.stats()["namespaces"]["a"]["bytes"] == 40 * KiB
        assert engine.put("a", [PutItem(key(4), payload(4, 10 * KiB))])[0].ok  # evicts key 0, a's oldest
        assert engine.exists("a", [key(i) for i in range(5)]) == [False, True, True, True, True]
        assert engine.exists("b", [key(100)]) == [True]
        assert engine.stats()["namespaces"]["a"]["bytes"] == 40 * KiB
        assert engine.put("a", [PutItem(key(9), payload(9, 41 * KiB))])[0].status is ErrorCode.CAPACITY_EXCEEDED
        assert engine.exists("a", [key(i) for i in range(1, 5)]) == [True] * 4  # nothing evicted for it
    finally:
        engine.close()


def test_byte_quota_never_evicts_pinned_or_leased_blocks(tmp_path: Path) -> None:
    engine = open_engine(tmp_path, capacity=8 * 1024 * KiB, unit=4 * KiB)
    try:
        engine.quotas = {"a": Quota(bytes=20 * KiB)}
        engine.put("a", [PutItem(key(1), payload(1, 10 * KiB)), PutItem(key(2), payload(2, 10 * KiB))])
        engine.suspend("a", engine.open_session("a", 60, [key(1)]).session_id, 60)
        engine.lookup("a", [key(2)], lease_ms=60_000)
        assert engine.put("a", [PutItem(key(3), payload(3, 4 * KiB))])[0].status is ErrorCode.CAPACITY_EXCEEDED
    finally:
        engine.close()


def test_pinned_sessions_and_leases_quotas(tmp_path: Path) -> None:
    engine = open_engine(tmp_path, capacity=8 * 1024 * KiB, unit=4 * KiB)
    try:
        engine.quotas = {"a": Quota(pinned_bytes=15 * KiB, sessions=2, leases=1)}
        engine.put("a", [PutItem(key(i), payload(i, 10 * KiB)) for i in range(3)])
        first = engine.open_session("a", 60, [key(0)])
        second = engine.open_session("a", 60, [key(0), key(1)])
        with pytest.raises(LimitExceeded):
            engine.open_session("a", 60)
        with pytest.raises(LimitExceeded):
            engine.fork("a", first.session_id)
        engine.suspend("a", first.session_id, 60)  # 10 KiB pinned
        with pytest.raises(CapacityExceeded):
            engine.suspend("a", second.session_id, 60)  # would pin 20 KiB
        assert engine.session_info("a", second.session_id).state.value == "open"
        engine.close_session("a", second.session_id)
        engine.open_session("a", 60)  # a closed session frees its place
        assert engine.open_session("b", 60).session_id  # other namespaces have no quota
        lease = engine.lookup("a", [key(2)], lease_ms=60_000)
        with pytest.raises(LimitExceeded):
            engine.lookup("a", [key(2)], lease_ms=60_000)
        assert engine.lookup("a", [key(2)]).prefix_len == 1  # no lease asked: no quota
        engine.release_lease("a", str(lease.lease_id))
        assert engine.lookup("a", [key(2)], lease_ms=60_000).lease_id is not None
    finally:
        engine.close()


def test_quotas_in_a_keys_file() -> None:
    ring = KeyRing.from_mapping({"namespaces": {"a": []}, "quotas": {"a": {"bytes": "1MiB", "sessions": 3}}})
    assert ring.quotas == {"a": Quota(bytes=1024 * 1024, sessions=3)}
    for bad in ({"a": {"bytes": -1}}, {"a": {"files": 1}}, {"a": {"sessions": True}}, {"a": {"leases": 1.5}},
                {"x": {"bytes": 1}}, ["a"]):
        with pytest.raises(InvalidArgument):
            KeyRing.from_mapping({"namespaces": {"a": []}, "quotas": bad})
    assert parse_quotas(None) == {}
