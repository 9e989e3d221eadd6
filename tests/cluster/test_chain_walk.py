"""Invalidation by prefix across shards (spec/cluster.md MKV-CLU-013, MKV-CLU-041), in one process:
a cluster client over three embedded engines, so that every case runs in milliseconds. The same
walk over real `memkv serve` processes is in test_cluster_client.py and the certification run."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from helpers_cluster import mixed_layout, placed_keys

from memkv.blocks import BlockMeta, MiB
from memkv.children import ChildPage
from memkv.cluster import shards as shard_links
from memkv.cluster.client import ClusterTransport
from memkv.cluster.membership import Membership
from memkv.cluster.placement import Shard
from memkv.errors import Unavailable, Unsupported
from memkv.store.embedded import FileTransport
from memkv.store.engine import StorageEngine
from memkv.transport import PutItem, Transport
from memkv.wrapper_transport import WrapperTransport

IDS = ("shard-a", "shard-b", "shard-c")


class Switchable(WrapperTransport):
    """A shard that can be taken away (every call UNAVAILABLE) or made an older one (no CHILDREN)."""

    def __init__(self, inner: FileTransport, state: dict[str, str]) -> None:
        self.real, self.state = inner, state
        self.namespace = inner.namespace

    @property  # type: ignore[override]
    def inner(self) -> FileTransport:
        if self.state.get("mode") == "down":
            raise Unavailable("switched off")
        return self.real

    def children(self, parents: Sequence[bytes], after: bytes | None = None) -> ChildPage:
        if self.state.get("mode") == "old":
            raise Unsupported("CHILDREN needs wire 1.2; this shard speaks 1.1")
        return self.inner.children(parents, after)


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[dict[str, StorageEngine]]:
    made = {s: StorageEngine(str(tmp_path / s), capacity=16 * MiB, unit=4096) for s in IDS}
    yield made
    for engine in made.values():
        engine.close()


@pytest.fixture
def modes() -> dict[str, dict[str, str]]:
    return {s: {} for s in IDS}


@pytest.fixture
def cluster(engines: dict[str, StorageEngine], modes: dict[str, dict[str, str]],
            monkeypatch: pytest.MonkeyPatch) -> Iterator[ClusterTransport]:
    monkeypatch.setattr(shard_links, "RETRY_AFTER_S", 0.0)  # a shard switched back on is tried at once

    def opener(shard: Shard, namespace: str) -> Transport:
        return Switchable(FileTransport(engines[shard.shard_id], namespace, owns_engine=False), modes[shard.shard_id])

    client = ClusterTransport(Membership([Shard(s) for s in IDS]), "walk", opener)
    yield client
    client.close()


def _tree(client: ClusterTransport, parents: dict[int, int | None], count: int) -> list[bytes]:
    """Blocks 0..count-1, block i chained after block parents[i] (None: a root), spread over the shards
    in a fixed irregular layout (the assertions on what each shard holds must not depend on chance)."""
    keys = placed_keys(client._placement, mixed_layout(count, len(IDS), seed=count))
    items = [PutItem(keys[i], b"block %d" % i, BlockMeta(parent=keys[p] if p is not None else bytes(16)))
             for i, p in parents.items()]
    for start in range(0, len(items), 200):
        assert all(r.ok for r in client.put(items[start:start + 200]))
    return keys


def _line(client: ClusterTransport, length: int) -> list[bytes]:
    return _tree(client, {i: (i - 1 if i else None) for i in range(length)}, length)


def _held(engines: dict[str, StorageEngine], keys: Sequence[bytes]) -> dict[str, int]:
    return {s: sum(sum(e.exists("walk", keys[i:i + 200])) for i in range(0, len(keys), 200))
            for s, e in engines.items()}


@pytest.mark.requirement("MKV-CLU-013", "MKV-INV-002")
def test_a_chain_spread_over_every_shard_is_removed_from_the_prefix_on(
        cluster: ClusterTransport, engines: dict[str, StorageEngine]) -> None:
    chain = _line(cluster, 40)
    branch = _tree(cluster, {0: None}, 1)[0]
    cluster.put([PutItem(branch, b"branch", BlockMeta(parent=chain[20]))])  # re-put under chain[20]
    assert all(n > 3 for n in _held(engines, chain).values())  # the chain crosses shards many times
    assert cluster.invalidate_prefix(chain[5]) == 35
    assert cluster.exists(chain) == [True] * 5 + [False] * 35
    assert cluster.exists([branch]) == [True]  # put before as a root: an identical re-put changes nothing
    assert cluster.invalidate_prefix(chain[0]) == 5 and sum(_held(engines, chain).values()) == 0


@pytest.mark.requirement("MKV-CLU-013")
def test_a_wide_level_is_read_page_by_page(cluster: ClusterTransport, engines: dict[str, StorageEngine],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """900 children of one root (about 300 per shard, pages of max_batch = 256) and 100 grandchildren;
    the 900 parents of the next level go out in requests of at most 256."""
    parents: dict[int, int | None] = {0: None, **{i: 0 for i in range(1, 901)},
                                      **{i: i - 900 for i in range(901, 1001)}}
    keys = _tree(cluster, parents, 1001)
    batch = engines[IDS[0]].limits.max_batch
    asked: list[tuple[int, bool]] = []
    real = FileTransport.children

    def spied(self: FileTransport, parents: Sequence[bytes], after: bytes | None = None) -> ChildPage:
        page = real(self, parents, after)
        asked.append((len(parents), page.next is not None))
        return page

    monkeypatch.setattr(FileTransport, "children", spied)
    assert cluster.invalidate_prefix(keys[0]) == 1001
    assert sum(_held(engines, keys).values()) == 0
    assert max(n for n, _ in asked) == batch and sum(more for _, more in asked) >= len(IDS)


@pytest.mark.requirement("MKV-INV-008", "MKV-CLU-013")
def test_the_children_of_a_removed_or_absent_prefix_are_found(cluster: ClusterTransport) -> None:
    chain = _line(cluster, 12)
    cluster.delete([chain[0]])
    assert cluster.invalidate_prefix(chain[0]) == 11 and cluster.exists(chain) == [False] * 12
    assert cluster.invalidate_prefix(os.urandom(16)) == 0


@pytest.mark.requirement("MKV-CLU-013")
def test_a_cycle_of_parent_links_ends_the_walk(cluster: ClusterTransport) -> None:
    a, b, c = (os.urandom(16) for _ in range(3))
    cluster.put([PutItem(a, b"a", BlockMeta(parent=c)), PutItem(b, b"b", BlockMeta(parent=a)),
                 PutItem(c, b"c", BlockMeta(parent=b))])
    assert cluster.invalidate_prefix(a) == 3


@pytest.mark.requirement("MKV-CLU-041")
def test_an_unreachable_shard_removes_only_the_prefix_and_the_repeat_completes(
        cluster: ClusterTransport, engines: dict[str, StorageEngine], modes: dict[str, dict[str, str]]) -> None:
    chain = _line(cluster, 30)
    home = cluster._placement.shard_of(chain[0]).shard_id
    away = next(s for s in IDS if s != home)
    modes[away]["mode"] = "down"
    with pytest.raises(Unavailable, match=away):
        cluster.invalidate_prefix(chain[0])
    assert engines[home].exists("walk", chain[:1]) == [False]
    held = _held(engines, chain[1:])
    assert sum(held.values()) == 29  # nothing under the prefix went: the repeat can still find it all
    modes[away].clear()
    assert cluster.invalidate_prefix(chain[0]) == 29
    assert sum(_held(engines, chain).values()) == 0


@pytest.mark.requirement("MKV-CLU-041")
def test_an_older_shard_fails_the_walk_unsupported(cluster: ClusterTransport, engines: dict[str, StorageEngine],
                                                    modes: dict[str, dict[str, str]]) -> None:
    chain = _line(cluster, 10)
    old = IDS[2]
    modes[old]["mode"] = "old"
    with pytest.raises(Unsupported, match=old):
        cluster.invalidate_prefix(chain[0])
    assert sum(_held(engines, chain).values()) == 9 and cluster.exists(chain[:1]) == [False]
    modes[old].clear()
    assert cluster.invalidate_prefix(chain[0]) == 9


@pytest.mark.requirement("MKV-CLU-041")
def test_a_shard_lost_during_the_removal_keeps_the_levels_above(
        cluster: ClusterTransport, engines: dict[str, StorageEngine], modes: dict[str, dict[str, str]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    chain = _line(cluster, 20)
    removed_levels: list[list[bytes]] = []
    real = ClusterTransport.invalidate_keys

    def failing_at_the_third_level(self: ClusterTransport, keys: Sequence[bytes]) -> int:
        if len(removed_levels) == 2:
            for mode in modes.values():
                mode["mode"] = "down"
        removed_levels.append(list(keys))
        return real(self, keys)

    monkeypatch.setattr(ClusterTransport, "invalidate_keys", failing_at_the_third_level)
    with pytest.raises(Unavailable):
        cluster.invalidate_prefix(chain[0])
    assert [level for level in removed_levels] == [[chain[19]], [chain[18]], [chain[17]]]  # deepest first
    for mode in modes.values():
        mode.clear()
    assert cluster.exists(chain) == [True] * 18 + [False] * 2  # every remaining block still chained after K
    monkeypatch.setattr(ClusterTransport, "invalidate_keys", real)
    assert cluster.invalidate_prefix(chain[0]) == 18


@pytest.mark.requirement("MKV-INV-008", "MKV-WIRE-044")
def test_the_root_is_no_blocks_parent(cluster: ClusterTransport, engines: dict[str, StorageEngine]) -> None:
    chain = _line(cluster, 6)  # chain[0]'s parent is the root, 16 zero bytes
    cluster.put([PutItem(bytes(16), b"a block under the zero key")])
    assert all(e.children("walk", [bytes(16)], None, 256).keys == () for e in engines.values())
    assert cluster.invalidate_prefix(bytes(16)) == 1 and cluster.exists(chain) == [True] * 6
