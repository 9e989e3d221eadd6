"""Sessions across the shards of a cluster (spec/cluster.md section 3a), against three real
`memkv serve` processes: each shard is asked directly what part of the session it holds."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from helpers_cluster import placed_keys

import memkv
from memkv.cluster.client import ClusterTransport
from memkv.cluster.session_ids import home_tag
from memkv.cluster.sessions import claims_sessions
from memkv.errors import NotFound, Unavailable, UnknownSession
from memkv.server.cluster_testing import LocalCluster
from memkv.sessions import SessionState
from memkv.transport import Capabilities, Limits, PutItem, Transport

req = pytest.mark.requirement
HOUR = 3600.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(3) as running:
        yield running


def _stored(client: Transport, count: int) -> list[bytes]:
    keys = [os.urandom(16) for _ in range(count)]
    assert all(r.ok for r in client.put([PutItem(k, b"block " + k) for k in keys]))
    return keys


class _Shards:
    """Each shard of the cluster, connected directly, and what it holds of a session."""

    def __init__(self, cluster: LocalCluster, namespace: str) -> None:
        client = memkv.connect(cluster.url(namespace))
        assert isinstance(client, ClusterTransport)
        self.client = client
        self.direct = {s.shard_id: memkv.connect(f"memkv+tcp://{s.address}/{namespace}") for s in client.shards}

    def own(self, chain: list[bytes]) -> dict[str, tuple[bytes, ...]]:
        """Shard id -> its keys of `chain`, in chain order (what its part must hold)."""
        parts: dict[str, tuple[bytes, ...]] = {}
        for key in chain:
            shard_id = self.client._placement.shard_of(key).shard_id
            parts[shard_id] = (*parts.get(shard_id, ()), key)
        return parts

    def part(self, shard_id: str, session_id: str) -> tuple[SessionState, tuple[bytes, ...]] | None:
        try:
            info = self.direct[shard_id].session_info(session_id)
        except UnknownSession:
            return None
        return info.state, info.keys

    def home(self, session_id: str) -> str:
        return next(s for s in self.direct if home_tag(s) == session_id.split("-")[0])

    def close(self) -> None:
        for transport in self.direct.values():
            transport.close()
        self.client.close()


@pytest.fixture
def shards(cluster: LocalCluster) -> Iterator[_Shards]:
    held = _Shards(cluster, "spanning")
    yield held
    held.close()


def _placed_chain(shards: _Shards, layout: str) -> list[bytes]:
    """Stored random keys, the i-th placed on shard number int(layout[i]) (in `shards.direct` order,
    the placement's), so that a test does not depend on where random keys happen to fall."""
    chain = placed_keys(shards.client._placement, [int(digit) for digit in layout])
    assert all(r.ok for r in shards.client.put([PutItem(k, b"block " + k) for k in chain]))
    return chain


def _check_parts(shards: _Shards, session_id: str, chain: list[bytes], state: SessionState) -> None:
    """The home holds the whole chain; every other shard with a key its own keys (MKV-CLU-050)."""
    home = shards.home(session_id)
    own = shards.own(chain)
    for shard_id in shards.direct:
        expected = tuple(chain) if shard_id == home else own.get(shard_id)
        held = shards.part(shard_id, session_id)
        if expected is None:
            assert held is None, shard_id
        else:
            assert held == (state, expected), shard_id


@req("MKV-CLU-050", "MKV-CLU-051", "MKV-CLU-052")
def test_a_session_spans_every_shard_of_its_chain(shards: _Shards) -> None:
    client = shards.client
    chain = _placed_chain(shards, "0122" + "102" * 12)  # 40 keys on all three shards
    assert len(shards.own(chain)) == 3
    opened = client.open_session(HOUR, chain[:5])
    sid = opened.session_id
    assert opened.keys == tuple(chain[:5]) and len(sid) <= 64
    _check_parts(shards, sid, chain[:5], SessionState.OPEN)
    grown = client.append(sid, chain[5:])
    assert grown.keys == tuple(chain) and client.session_info(sid).keys == tuple(chain)
    _check_parts(shards, sid, chain, SessionState.OPEN)
    suspended = client.suspend(sid, HOUR)
    assert suspended.state is SessionState.SUSPENDED and suspended.keys == tuple(chain)
    _check_parts(shards, sid, chain, SessionState.SUSPENDED)  # each shard pins its own blocks
    fork = client.fork(sid, prefix_len=30)
    assert (fork.keys, fork.parent_id, fork.session_id.split("-")[0]) == (tuple(chain[:30]), sid, sid.split("-")[0])
    _check_parts(shards, fork.session_id, chain[:30], SessionState.OPEN)
    closed = client.close_session(sid)
    assert closed.state is SessionState.CLOSED and closed.keys == tuple(chain)
    assert all(shards.part(s, sid) is None for s in shards.direct)
    with pytest.raises(UnknownSession):
        client.session_info(sid)


@req("MKV-CLU-051")
def test_a_key_missing_on_its_shard_is_refused_before_anything_changes(shards: _Shards) -> None:
    client = shards.client
    chain = _stored(client, 12)
    sid = client.open_session(HOUR, chain[:6]).session_id
    with pytest.raises(NotFound):
        client.append(sid, [*chain[6:], os.urandom(16)])
    _check_parts(shards, sid, chain[:6], SessionState.OPEN)
    with pytest.raises(NotFound):
        client.open_session(HOUR, [chain[0], os.urandom(16)])


@req("MKV-CLU-053", "MKV-CLU-050")
def test_resume_keeps_the_prefix_stored_on_every_shard(shards: _Shards) -> None:
    """Shard 0 is the home; shard 1 keeps keys on both sides of the cut; shard 2 has keys only after
    it, so its part is closed rather than left empty."""
    client = shards.client
    chain = _placed_chain(shards, "01" * 8 + "0" + "1" + "210" * 4)
    sid = client.open_session(HOUR, chain).session_id
    _check_parts(shards, sid, chain, SessionState.OPEN)
    client.suspend(sid, HOUR)
    assert client.delete([chain[17]])[0].ok  # deletion removes a pinned block (MKV-INV-006)
    resumed = client.resume(sid)
    assert resumed.valid_keys == tuple(chain[:17]) and resumed.session.state is SessionState.OPEN
    _check_parts(shards, sid, chain[:17], SessionState.OPEN)
    assert shards.part(list(shards.direct)[2], sid) is None
    assert client.append(sid, chain[18:20]).keys == (*chain[:17], *chain[18:20])
    _check_parts(shards, sid, [*chain[:17], *chain[18:20]], SessionState.OPEN)  # shard 2 reopened
    client.close_session(sid)
    assert all(shards.part(s, sid) is None for s in shards.direct)  # no part outlives the close


@req("MKV-CLU-054")
def test_invalidate_session_removes_the_blocks_of_every_shard(shards: _Shards) -> None:
    client = shards.client
    chain = _stored(client, 24)
    sid = client.open_session(HOUR, chain).session_id
    assert client.invalidate_session(sid) == 24
    assert not any(client.exists(chain))
    for bad in ("nosuchsession", "00000000-" + "0" * 32):
        with pytest.raises(UnknownSession):
            client.session_info(bad)


@req("MKV-CLU-056")
def test_a_cluster_claims_sessions_only_over_shards_of_1_2_that_hold_parts(shards: _Shards) -> None:
    assert "sessions" in shards.client.capabilities().profiles
    caps = Capabilities("tcp", frozenset({"core", "sessions"}), Limits())
    older = Capabilities("tcp", frozenset({"core", "sessions"}), Limits(), spec_version="1.1")
    assert claims_sessions([(caps, True), (caps, True)])
    assert not claims_sessions([(caps, True), (older, True)])
    assert not claims_sessions([(caps, True), (caps, False)])
    assert not claims_sessions([(caps, True), (Capabilities("tcp", frozenset({"core"}), Limits()), True)])


@req("MKV-CLU-055")
def test_a_lost_part_does_not_stop_the_others_and_counts_as_missing() -> None:
    with LocalCluster(3) as cluster:
        shards = _Shards(cluster, "lost")
        client = shards.client
        try:
            chain = _placed_chain(shards, "0102" + "012" * 9)  # shard 0 is the home, shard 2 the victim
            sid = client.open_session(HOUR, chain).session_id
            home, other, victim_id = shards.direct
            assert shards.home(sid) == home
            victim = cluster.addresses.index(victim_id)  # a shard's id is its address; the placement sorts them
            first_lost = 3
            shards.direct.pop(victim_id).close()
            cluster.kill(victim)
            with pytest.raises(Unavailable):
                client.suspend(sid, HOUR)
            assert client.session_info(sid).state is SessionState.SUSPENDED  # the home and the rest applied
            with pytest.raises(Unavailable):
                client.resume(sid)
            assert client.session_info(sid).keys == tuple(chain[:first_lost])
            assert shards.part(other, sid) == (SessionState.OPEN, (chain[1],))
        finally:
            shards.close()
