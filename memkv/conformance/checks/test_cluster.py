"""Profile cluster (spec/cluster.md): what a client sees of a cluster through one transport."""

from __future__ import annotations

import pytest

from memkv.conformance.support import Context, check, payload, put_ok
from memkv.errors import MemkvError
from memkv.transport import PutItem


@pytest.mark.requirement("MKV-CLU-015", "MKV-CLU-056")
def test_cluster_declares_itself_and_reports_its_shards(memkv: Context) -> None:
    t = memkv.transport()
    caps = t.capabilities()
    check("MKV-CLU-015", "cluster" in caps.profiles, "capabilities claim cluster", "cluster", sorted(caps.profiles))
    extra = set(caps.profiles) - {"core", "durable", "shared", "sessions", "cluster"}
    check("MKV-CLU-015", not extra, "a cluster claims no profile of one server's surface", "none", sorted(extra))
    if "sessions" in caps.profiles:
        major, _, minor = caps.spec_version.partition(".")
        check("MKV-CLU-056", major == "1" and minor.isdigit() and int(minor) >= 2,
              "a cluster claims sessions only over shards of spec 1.2 or later", ">= 1.2", caps.spec_version)
    keys = [memkv.key() for _ in range(12)]
    t.put([PutItem(k, payload(i, 100)) for i, k in enumerate(keys)])
    stats = t.stats()
    check("MKV-CLU-015", stats.get("blocks") == 12, "stats sum the blocks of every shard", 12, stats.get("blocks"))
    check("MKV-CLU-015", stats.get("unreachable_shards") == [], "stats list no unreachable shard", [],
          stats.get("unreachable_shards"))


@pytest.mark.requirement("MKV-CLU-010")
def test_cluster_batches_come_back_in_item_order(memkv: Context) -> None:
    t = memkv.transport()
    count = min(memkv.limits.max_batch, 64)
    keys = [memkv.key() for _ in range(count)]
    results = t.put([PutItem(k, payload(i, 64 + i)) for i, k in enumerate(keys)])
    check("MKV-CLU-010", all(r.ok for r in results), "every item of a spread batch is stored", "OK",
          [r.status.name for r in results if not r.ok][:3])
    got = t.get(keys)
    wrong = [i for i, data in enumerate(got) if data != payload(i, 64 + i)]
    check("MKV-CLU-010", not wrong, "get answers each item's own block, in item order", [], wrong[:5])
    check("MKV-CLU-010", t.exists([*keys[::-1], memkv.key()]) == [True] * count + [False],
          "exists answers in item order", "all present, then absent", "other")
    over = [PutItem(memkv.key(), b"x") for _ in range(memkv.limits.max_batch + 1)]
    try:
        t.put(over)
        refused = False
    except MemkvError:
        refused = True
    check("MKV-CLU-010", refused, "a batch over max_batch is refused whole", "LIMIT_EXCEEDED", "accepted")
    check("MKV-CLU-010", t.exists([over[0].key, over[-1].key]) == [False, False],
          "nothing of the refused batch is stored", [False, False], "stored")


@pytest.mark.requirement("MKV-CLU-011")
def test_cluster_chain_lookup_and_its_lease(memkv: Context) -> None:
    t = memkv.transport()
    chain = [memkv.key() for _ in range(20)]
    for i, key in enumerate(chain):
        put_ok(t, key, payload(i, 128), "MKV-CLU-011")
    check("MKV-CLU-011", t.lookup(chain).prefix_len == 20, "a whole chain is found", 20, t.lookup(chain).prefix_len)
    for gap in (13, 6, 1):
        t.delete([chain[gap]])
        found = t.lookup(chain).prefix_len
        check("MKV-CLU-011", found == gap, f"the prefix ends at the first missing key ({gap})", gap, found)
    leased = t.lookup(chain, lease_ms=60_000)  # still live at the release, however busy the machine
    check("MKV-CLU-011", leased.prefix_len == 1 and leased.lease_id is not None, "a lease covers the prefix",
          "prefix 1 with a lease", leased)
    assert leased.lease_id is not None
    t.release_lease(leased.lease_id)
    try:
        t.release_lease(leased.lease_id)
        again = "released twice"
    except MemkvError as exc:
        again = exc.code.name
    check("MKV-CLU-011", again == "UNKNOWN_LEASE", "one lease id releases every part, once", "UNKNOWN_LEASE", again)
