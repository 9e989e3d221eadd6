"""One `Transport` over every shard of a cluster (spec/cluster.md sections 3 and 4).

Batches are split by placement and sent to their shards concurrently; items of a shard that
cannot be reached get their own answer (UNAVAILABLE, absent) and never move to another shard.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from ..blocks import Limits
from ..buffers import BufferLike
from ..errors import ErrorCode, Unavailable, UnknownLease, UnknownSession, Unsupported
from ..keys import check_key
from ..namespaces import check_namespace
from ..sessions import SessionInfo
from ..transport import (
    BlockInfo,
    Capabilities,
    GetResult,
    ItemResult,
    LookupResult,
    PutItem,
    ResumeResult,
    Transport,
)
from ..transport_features import SpansSessions
from .chain_walk import children_on, chunks, walk
from .membership import Membership
from .placement import Placement, Shard
from .session_ids import home_tag, split_session_id
from .sessions import ClusterSessions, claims_sessions
from .shards import ShardLink, is_lost
from .stats import merge_stats

T = TypeVar("T")
R = TypeVar("R")
MAX_PARALLEL = 32
CLUSTER_PROFILES = frozenset({"core", "durable", "shared", "sessions"})  # what a cluster can claim of its shards


class ClusterTransport(Transport):
    """A namespace of a cluster: placement over the membership, one `ShardLink` per member."""

    def __init__(self, membership: Membership, namespace: str, opener: Callable[[Shard, str], Transport],
                 owns_membership: bool = False) -> None:
        self.namespace = check_namespace(namespace)
        self._opener = opener
        self._lock = threading.Lock()
        self._links: dict[str, ShardLink] = {}
        self._leases: dict[str, list[tuple[str, str]]] = {}
        self._limits: Limits | None = None
        self._workers = concurrent.futures.ThreadPoolExecutor(MAX_PARALLEL, thread_name_prefix="memkv-cluster")
        self._membership = membership
        self._owns_membership = owns_membership
        self._placement = Placement(membership.shards())
        self._sessions = ClusterSessions(self)
        self._sync_links(self._placement.shards)
        membership.subscribe(self._membership_changed)

    # ---- membership ----------------------------------------------------------------------------
    def _membership_changed(self, shards: Sequence[Shard]) -> None:
        if not shards:
            return  # keep the last placement: an empty membership places nothing (MKV-CLU-003)
        placement = Placement(shards)
        with self._lock:
            self._placement = placement
        self._sync_links(placement.shards)

    def _sync_links(self, shards: Iterable[Shard]) -> None:
        stale: list[ShardLink] = []
        with self._lock:
            wanted = {s.shard_id: s for s in shards}
            for shard_id, link in list(self._links.items()):
                if shard_id not in wanted or wanted[shard_id].address != link.shard.address:
                    stale.append(self._links.pop(shard_id))
            for shard_id, shard in wanted.items():
                if shard_id not in self._links:
                    self._links[shard_id] = ShardLink(shard, lambda s: self._opener(s, self.namespace))
        for link in stale:
            link.close()

    def _view(self) -> tuple[Placement, list[ShardLink]]:
        with self._lock:
            placement = self._placement
            return placement, [self._links[s.shard_id] for s in placement.shards]

    @property
    def shards(self) -> tuple[Shard, ...]:
        return self._view()[0].shards

    # ---- fan-out -------------------------------------------------------------------------------
    def _run_on(self, link: ShardLink, call: Callable[[Transport], R]) -> R:
        transport = link.transport()
        try:
            return call(transport)
        except Exception as exc:
            if is_lost(exc):
                link.lost(exc)
                raise Unavailable(f"shard {link.shard.shard_id} is unreachable: {exc}") from None
            raise

    def _fan_out(self, calls: dict[int, Callable[[Transport], R]], links: Sequence[ShardLink]
                 ) -> dict[int, R | Unavailable]:
        """Run each shard's call concurrently; an unreachable shard's result is its `Unavailable`."""
        futures = {i: self._workers.submit(self._run_on, links[i], call) for i, call in calls.items()}
        results: dict[int, R | Unavailable] = {}
        first_error: BaseException | None = None
        for index, future in futures.items():
            try:
                results[index] = future.result()
            except Unavailable as exc:
                results[index] = exc
            except Exception as exc:  # an answer of the shard (INVALID_KEY, LIMIT_EXCEEDED ...)
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return results

    def _batch(self, keys: Sequence[Any], per_shard: Callable[[Transport, list[int]], list[T]],
               unreachable: Callable[[Unavailable], T]) -> list[T]:
        self._check_batch(len(keys))
        placement, links = self._view()
        groups = _split(placement, keys)
        answers = self._fan_out({i: functools.partial(_swap, per_shard, p) for i, p in groups.items()}, links)
        out: list[Any] = [None] * len(keys)
        for index, positions in groups.items():
            answer = answers[index]
            for slot, position in enumerate(positions):
                out[position] = unreachable(answer) if isinstance(answer, Unavailable) else answer[slot]
        return out

    def _check_batch(self, count: int) -> None:
        if self._limits is None:
            try:
                self._limits = self.capabilities().limits
            except Unavailable:
                return  # nothing reachable: every item gets UNAVAILABLE below
        self._limits.check_batch(count)

    def _broadcast(self, call: Callable[[Transport], int]) -> int:
        """Send to every shard, sum the counts; fail UNAVAILABLE after the others applied it (MKV-CLU-012)."""
        _, links = self._view()
        answers = self._fan_out(dict.fromkeys(range(len(links)), call), links)
        return _counted(answers, links)

    # ---- blocks --------------------------------------------------------------------------------
    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        return self._batch([i.key for i in items], lambda t, p: t.put([items[j] for j in p]), _unavailable_item)

    def get_into(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        if len(buffers) != len(keys):
            return self._one_shard().get_into(keys, buffers)  # the shard states the refusal
        return self._batch(keys, lambda t, p: t.get_into([keys[j] for j in p], [buffers[j] for j in p]),
                           lambda exc: GetResult(ErrorCode.UNAVAILABLE, exc.message))

    def stat(self, keys: Sequence[bytes]) -> list[BlockInfo | None]:
        return self._batch(keys, lambda t, p: list(t.stat([keys[j] for j in p])), _absent)

    def exists(self, keys: Sequence[bytes]) -> list[bool]:
        return self._batch(keys, lambda t, p: t.exists([keys[j] for j in p]), lambda exc: False)

    def delete(self, keys: Sequence[bytes]) -> list[ItemResult]:
        return self._batch(keys, lambda t, p: t.delete([keys[j] for j in p]), _unavailable_item)

    def lookup(self, keys: Sequence[bytes], lease_ms: int = 0) -> LookupResult:
        """One concurrent round per shard involved; the prefix ends at the earliest stop (MKV-CLU-011)."""
        if not keys:
            return self._one_shard().lookup(keys, lease_ms)
        self._check_batch(len(keys))
        placement, links = self._view()
        groups = _split(placement, keys)
        answers = self._fan_out({i: functools.partial(_lookup_part, keys, p, lease_ms)
                                 for i, p in groups.items()}, links)
        prefix = len(keys)
        for index, positions in groups.items():
            answer = answers[index]
            stop = 0 if isinstance(answer, Unavailable) else answer.prefix_len
            if stop < len(positions):
                prefix = min(prefix, positions[stop])
        parts = [(links[i].shard.shard_id, a) for i, a in answers.items()
                 if isinstance(a, LookupResult) and a.lease_id is not None]
        if not parts:
            return LookupResult(prefix)
        if prefix == 0:
            self._release_parts([(shard_id, a.lease_id) for shard_id, a in parts if a.lease_id])
            return LookupResult(0)
        lease_id = uuid.uuid4().hex
        with self._lock:
            self._leases[lease_id] = [(shard_id, a.lease_id) for shard_id, a in parts if a.lease_id]
        expiries = [a.lease_expires_at for _, a in parts if a.lease_expires_at is not None]
        return LookupResult(prefix, lease_id, min(expiries) if expiries else None)

    def release_lease(self, lease_id: str) -> None:
        with self._lock:
            parts = self._leases.pop(lease_id, None) if isinstance(lease_id, str) else None
        if parts is None:
            raise UnknownLease(f"no lease {lease_id!r} on this cluster transport")
        if not self._release_parts(parts):
            raise UnknownLease(f"lease {lease_id} has expired")

    def _release_parts(self, parts: Sequence[tuple[str, str]]) -> bool:
        """Release each shard's part; True when at least one part was still live."""
        _, links = self._view()
        by_id = {link.shard.shard_id: (i, link) for i, link in enumerate(links)}
        calls: dict[int, Callable[[Transport], bool]] = {}
        for shard_id, part in parts:
            if shard_id in by_id:
                calls[by_id[shard_id][0]] = functools.partial(_release_one, part)
        answers = self._fan_out(calls, links)
        return any(a is True for a in answers.values())

    # ---- sessions: parts on every shard of the chain, the home's answers (spec/cluster.md 3a) ----
    def _home(self, session_id: str) -> tuple[ShardLink, str]:
        tag, own_id = split_session_id(session_id)
        for link in self._view()[1]:
            if home_tag(link.shard.shard_id) == tag:
                return link, own_id
        raise UnknownSession(f"session {session_id!r} names no shard of this cluster")

    def open_session(self, ttl_s: float, keys: Sequence[bytes] = (), fingerprint: bytes = bytes(16)) -> SessionInfo:
        return self._sessions.open(ttl_s, keys, fingerprint)

    def append(self, session_id: str, keys: Sequence[bytes]) -> SessionInfo:
        return self._sessions.append(session_id, keys)

    def suspend(self, session_id: str, pause_ttl_s: float) -> SessionInfo:
        return self._sessions.suspend(session_id, pause_ttl_s)

    def resume(self, session_id: str) -> ResumeResult:
        return self._sessions.resume(session_id)

    def fork(self, session_id: str, prefix_len: int | None = None, ttl_s: float | None = None) -> SessionInfo:
        return self._sessions.fork(session_id, prefix_len, ttl_s)

    def close_session(self, session_id: str) -> SessionInfo:
        return self._sessions.close(session_id)

    def session_info(self, session_id: str) -> SessionInfo:
        return self._sessions.info(session_id)

    # ---- invalidation --------------------------------------------------------------------------
    def invalidate_keys(self, keys: Sequence[bytes]) -> int:
        self._check_batch(len(keys))
        placement, links = self._view()
        groups = _split(placement, keys)
        answers = self._fan_out({i: functools.partial(_invalidate_part, keys, p) for i, p in groups.items()},
                                links)
        return _counted(answers, links)

    def invalidate_prefix(self, key: bytes) -> int:
        """Walk the chain under `key` on every shard, then remove it deepest level first (MKV-CLU-013)."""
        root = check_key(key)
        batch = self._max_batch()
        try:
            levels = walk(root, functools.partial(self._children_everywhere, batch))
        except (Unavailable, Unsupported):
            with contextlib.suppress(Unavailable):
                self.invalidate_keys([root])  # repeatable: K's children are found without K (MKV-CLU-041)
            raise
        removed = 0
        for level in reversed(levels):
            for part in chunks(level, batch):
                removed += self.invalidate_keys(part)  # UNAVAILABLE stops before the levels above
        return removed

    def _children_everywhere(self, batch: int, parents: list[bytes]) -> list[bytes]:
        """The children every shard stores of `parents`; UNAVAILABLE or UNSUPPORTED naming the shards
        that could not answer."""
        _, links = self._view()
        answers = self._fan_out(dict.fromkeys(range(len(links)), functools.partial(_children_or_refusal, parents,
                                                                                    batch)), links)
        lost = [links[i].shard.shard_id for i, a in answers.items() if isinstance(a, Unavailable)]
        if lost:
            raise Unavailable(f"shards {', '.join(lost)} are unreachable: only the prefix key was removed; "
                              "repeat the invalidation once they are back")
        older = [f"{links[i].shard.shard_id} ({a.message})" for i, a in answers.items() if isinstance(a, Unsupported)]
        if older:
            raise Unsupported(f"shards {', '.join(older)} cannot follow a chain: only the prefix key was removed")
        return [k for a in answers.values() if isinstance(a, list) for k in a]

    def _max_batch(self) -> int:
        if self._limits is None:
            self._limits = self.capabilities().limits
        return self._limits.max_batch

    def invalidate_session(self, session_id: str) -> int:
        return self._sessions.invalidate(session_id)

    def invalidate_model(self, fingerprint: bytes) -> int:
        return self._broadcast(lambda t: t.invalidate_model(fingerprint))

    def invalidate_namespace(self) -> int:
        return self._broadcast(lambda t: t.invalidate_namespace())

    # ---- target --------------------------------------------------------------------------------
    def _reachable_answers(self, call: Callable[[Transport], R]) -> tuple[list[R], list[str]]:
        _, links = self._view()
        answers = self._fan_out(dict.fromkeys(range(len(links)), call), links)
        got = [a for a in answers.values() if not isinstance(a, Unavailable)]
        missing = [links[i].shard.shard_id for i, a in answers.items() if isinstance(a, Unavailable)]
        if not got:
            raise Unavailable(f"no shard of the cluster is reachable ({', '.join(missing)})")
        return got, missing

    def capabilities(self) -> Capabilities:
        """`cluster` plus the data profiles every reachable shard claims, smallest limits, summed capacity
        (MKV-CLU-015)."""
        answers, _ = self._reachable_answers(lambda t: (t.capabilities(), isinstance(t, SpansSessions)))
        caps = [c for c, _ in answers]
        profiles = frozenset.intersection(*(c.profiles for c in caps)) & CLUSTER_PROFILES | {"cluster"}
        if not claims_sessions(answers):
            profiles -= {"sessions"}
        limits = Limits(**{f.name: min(getattr(c.limits, f.name) for c in caps)
                           for f in dataclasses.fields(Limits)})
        capacities = [c.capacity_bytes for c in caps]
        windows = [c.flush_window_s for c in caps]
        self._limits = limits
        return Capabilities(
            backend="cluster", profiles=profiles, limits=limits, spec_version=caps[0].spec_version,
            capacity_bytes=None if None in capacities else sum(c or 0 for c in capacities),
            flush_window_s=None if None in windows else max(w or 0.0 for w in windows))

    def stats(self) -> dict[str, Any]:
        answers, missing = self._reachable_answers(lambda t: t.stats())
        merged = merge_stats(answers)
        merged["shards"] = len(self.shards)
        merged["unreachable_shards"] = missing
        return merged

    def shard_report(self) -> list[dict[str, Any]]:
        """Each member: id, address, weight, reachable, and its stats when it answers (memkv admin)."""
        links = self._view()[1]
        answers = self._fan_out(dict.fromkeys(range(len(links)), lambda t: t.stats()), links)
        rows = []
        for index, link in enumerate(links):
            answer = answers[index]
            row: dict[str, Any] = {"id": link.shard.shard_id, "address": link.shard.address,
                                   "weight": link.shard.weight, "node": self._membership.node_of(link.shard)}
            if isinstance(answer, Unavailable):
                row.update(state="unreachable", error=answer.message)
            else:
                row.update(state="up", blocks=answer.get("blocks"), bytes=answer.get("bytes"),
                           capacity_bytes=answer.get("capacity_bytes"), used_bytes=answer.get("used_bytes"))
            rows.append(row)
        return rows

    def _one_shard(self) -> Transport:
        for link in self._view()[1]:
            try:
                return link.transport()
            except Unavailable:
                continue
        raise Unavailable("no shard of the cluster is reachable")

    def _close(self) -> None:
        self._membership.unsubscribe(self._membership_changed)
        if self._owns_membership:
            self._membership.close()
        with self._lock:
            links = list(self._links.values())
            self._links.clear()
        for link in links:
            link.close()
        self._workers.shutdown(wait=True)


def _split(placement: Placement, keys: Sequence[Any]) -> dict[int, list[int]]:
    """Positions grouped by shard; a key that is not bytes goes to the first shard, which refuses it."""
    groups: dict[int, list[int]] = {}
    for position, key in enumerate(keys):
        index = placement.shard_index(bytes(key)) if isinstance(key, bytes | bytearray | memoryview) else 0
        groups.setdefault(index, []).append(position)
    return groups


def _counted(answers: dict[int, int | Unavailable], links: Sequence[ShardLink]) -> int:
    """The sum of the shards' counts, or UNAVAILABLE naming the shards that missed it (MKV-CLU-012)."""
    missing = [links[i].shard.shard_id for i, a in answers.items() if isinstance(a, Unavailable)]
    if missing:
        raise Unavailable(f"shards {', '.join(missing)} are unreachable; repeat the invalidation once they are back")
    return sum(a for a in answers.values() if isinstance(a, int))


def _absent(exc: Unavailable) -> None:
    return None


def _unavailable_item(exc: Unavailable) -> ItemResult:
    return ItemResult(ErrorCode.UNAVAILABLE, exc.message)


def _swap(call: Callable[[Transport, list[int]], list[T]], positions: list[int], transport: Transport) -> list[T]:
    return call(transport, positions)


def _lookup_part(keys: Sequence[bytes], positions: list[int], lease_ms: int, transport: Transport) -> LookupResult:
    return transport.lookup([keys[j] for j in positions], lease_ms)


def _invalidate_part(keys: Sequence[bytes], positions: list[int], transport: Transport) -> int:
    return transport.invalidate_keys([keys[j] for j in positions])


def _children_or_refusal(parents: list[bytes], batch: int, transport: Transport) -> list[bytes] | Unsupported:
    try:
        return children_on(transport, parents, batch)
    except Unsupported as exc:
        return exc


def _release_one(part: str, transport: Transport) -> bool:
    try:
        transport.release_lease(part)
    except UnknownLease:
        return False
    return True


__all__ = ["ClusterTransport"]
