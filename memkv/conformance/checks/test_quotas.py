"""Per-namespace quotas set by the operator (MKV-NS-010), on a server started with a keys file that
sets them (needs `Target.launch`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
import yaml

from memkv.conformance.support import Context, check, expect_code, payload
from memkv.errors import ErrorCode
from memkv.transport import PutItem, Transport

E = ErrorCode
KiB = 1024
BLOCK = 64 * KiB
QUOTA = {"bytes": 4 * BLOCK, "pinned_bytes": 3 * BLOCK, "sessions": 2, "leases": 1}


@pytest.fixture
def quota_clients(memkv: Context) -> Iterator[tuple[Transport, Transport]]:
    """Clients of a limited namespace and an unlimited one on a server launched with quotas."""
    directory = tempfile.mkdtemp(prefix="memkv-cf-quota-")
    path = os.path.join(directory, "keys.yaml")
    # the unlimited namespace sorts after the limited one, so that a store which takes quota victims from
    # namespaces by comparing names in order is caught as readily as one that ignores the namespace
    secrets = {ns: os.urandom(32).hex() for ns in ("memkv-cf-limited", "memkv-cf-open")}
    doc = {"namespaces": {ns: [{"id": f"{ns}-admin", "secret": s, "role": "admin"}] for ns, s in secrets.items()},
           "quotas": {"memkv-cf-limited": QUOTA}}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(doc, handle)
    hook = getattr(memkv.target, "launch", None)
    launched = hook(path) if callable(hook) else None
    if launched is None or not launched.started:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.skip("the target cannot start a server of the implementation with a keys file (Target.launch)")
    clients = [launched.target.second_client(ns, {"key": f"{ns}-admin:{s}"}) for ns, s in secrets.items()]
    try:
        yield clients[0], clients[1]
    finally:
        for client in clients:
            client.close()
        launched.target.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.requirement("MKV-NS-010")
def test_quotas_are_enforced(memkv: Context, quota_clients: tuple[Transport, Transport]) -> None:
    limited, free = quota_clients
    keys = [memkv.key() for _ in range(6)]
    other = memkv.key()
    free.put([PutItem(other, payload(99, BLOCK))])[0].raise_for_status()
    for i, key in enumerate(keys[:4]):
        limited.put([PutItem(key, payload(i, BLOCK))])[0].raise_for_status()
    status = limited.put([PutItem(keys[4], payload(4, BLOCK))])[0].status
    check("MKV-NS-010", status is E.OK and limited.exists(keys[:5]) == [False, True, True, True, True],
          "a put over the byte quota evicts the namespace's least recently used block", "OK; the first key gone",
          f"{status.name}; {limited.exists(keys[:5])}")
    check("MKV-NS-010", free.exists([other]) == [True], "another namespace's block is never evicted for it",
          "present", "evicted")
    session = limited.open_session(600.0, keys[1:4])
    limited.open_session(600.0)
    expect_code("MKV-NS-010", "a third session over a quota of 2", lambda: limited.open_session(600.0),
                [E.LIMIT_EXCEEDED])
    limited.suspend(session.session_id, 600.0)  # pins 3 blocks: the pinned-bytes quota exactly
    status = limited.put([PutItem(keys[5], payload(5, 2 * BLOCK))])[0].status
    check("MKV-NS-010", status is E.CAPACITY_EXCEEDED, "a put that only pinned blocks could make room for",
          "CAPACITY_EXCEEDED", status.name)
    check("MKV-NS-010", limited.exists(keys[1:5]) == [True] * 4, "the refused put evicted nothing", [True] * 4,
          limited.exists(keys[1:5]))
    limited.lookup([keys[4]], lease_ms=60_000)
    expect_code("MKV-NS-010", "a second lease over a quota of 1", lambda: limited.lookup([keys[4]], lease_ms=60_000),
                [E.LIMIT_EXCEEDED])
    free.open_session(600.0)
    free.open_session(600.0)
    free.open_session(600.0)  # no quota on the other namespace


@pytest.mark.requirement("MKV-NS-010")
def test_deleted_blocks_give_their_bytes_back_to_the_quota(memkv: Context,
                                                           quota_clients: tuple[Transport, Transport]) -> None:
    limited, _ = quota_clients
    first = [memkv.key() for _ in range(4)]
    for i, key in enumerate(first):  # the byte quota exactly
        limited.put([PutItem(key, payload(i, BLOCK))])[0].raise_for_status()
    check("MKV-NS-010", all(r.ok for r in limited.delete(first)), "the namespace's blocks are deleted", "OK",
          "refused")
    again = [memkv.key() for _ in range(4)]
    statuses = [limited.put([PutItem(key, payload(10 + i, BLOCK))])[0].status for i, key in enumerate(again)]
    check("MKV-NS-010", statuses == [E.OK] * 4 and limited.exists(again) == [True] * 4,
          "after its blocks are deleted a namespace holds its whole byte quota again", "4 x OK, all present",
          f"{[s.name for s in statuses]}, {limited.exists(again)}")


@pytest.mark.requirement("MKV-NS-010")
def test_a_multi_item_put_over_the_byte_quota_evicts_the_namespace_blocks_first(
        memkv: Context, quota_clients: tuple[Transport, Transport]) -> None:
    """The items of one put request are held to the byte quota as single puts are: a store that
    checks the quota only for single puts lets a batch carry the namespace past it."""
    limited, _ = quota_clients
    keys = [memkv.key() for _ in range(6)]
    for i, key in enumerate(keys[:4]):  # the byte quota exactly, least recently used first
        limited.put([PutItem(key, payload(20 + i, BLOCK))])[0].raise_for_status()
    results = limited.put([PutItem(keys[4], payload(24, BLOCK)), PutItem(keys[5], payload(25, BLOCK))])
    present = limited.exists(keys)
    check("MKV-NS-010", [r.status for r in results] == [E.OK, E.OK] and present == [False, False] + [True] * 4,
          "a put of two items into a namespace at its byte quota evicts its two least recently used blocks",
          "OK, OK; the first two keys gone", f"{[r.status.name for r in results]}; present {present}")
    stored = limited.stats()["bytes"]
    check("MKV-NS-010", stored <= QUOTA["bytes"], "the namespace's stored bytes after the put", f"<= {QUOTA['bytes']}",
          stored)
