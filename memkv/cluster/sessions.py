"""Sessions across shards (spec/cluster.md section 3a, MKV-CLU-050..056).

A cluster session is made of parts, sessions of the shards under one id that the client chose
(MKV-WIRE-052): the home's part holds the whole chain, foreign keys included (MKV-WIRE-053), and
every other shard that the placement gives a key of the chain holds a part of its own keys, so
that each shard pins what it stores. The home answers; the other parts follow it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import NotFound, SessionExpired, Unavailable, UnknownSession, Unsupported
from ..keys import check_key
from ..sessions import SessionEvent, SessionInfo, check_fork, check_ttl, next_state
from ..transport import Capabilities, ResumeResult, Transport
from ..transport_features import SpansSessions
from ..wire.session_answers import SESSIONS_1_2_MINOR
from .placement import Placement
from .session_ids import home_tag
from .shards import ShardLink

if TYPE_CHECKING:
    from .client import ClusterTransport

# What a part other than the home's may answer without stopping the operation (MKV-CLU-055).
MISSED = (Unavailable, UnknownSession, SessionExpired, NotFound)


def spanning(transport: Transport) -> SpansSessions:
    """The shard's transport as a holder of session parts; UNSUPPORTED when it cannot be."""
    if not isinstance(transport, SpansSessions):
        raise Unsupported(f"a {type(transport).__name__} cannot hold a part of a cluster session")
    return transport


def claims_sessions(shards: Sequence[tuple[Capabilities, bool]]) -> bool:
    """Whether every reachable shard (its capabilities, whether its transport holds parts) claims
    `sessions` and speaks 1.2 or later (MKV-CLU-056)."""
    return all(spans and "sessions" in caps.profiles and _minor(caps.spec_version) >= SESSIONS_1_2_MINOR
               for caps, spans in shards)


def _minor(version: str) -> int:
    major, _, minor = version.partition(".")
    return int(minor) if major == "1" and minor.isdigit() else 0


def new_session_id(home: ShardLink) -> str:
    """The home's tag, a dash and 128 random bits (MKV-CLU-014, MKV-CLU-050)."""
    return f"{home_tag(home.shard.shard_id)}-{uuid.uuid4().hex}"


class ClusterSessions:
    """The session operations of one ClusterTransport."""

    def __init__(self, cluster: ClusterTransport) -> None:
        self.cluster = cluster

    # ---- plumbing ------------------------------------------------------------------------------
    def _home(self, session_id: str) -> ShardLink:
        return self.cluster._home(session_id)[0]

    def _on_home(self, home: ShardLink, call: Callable[[Transport], SessionInfo]) -> SessionInfo:
        return self.cluster._run_on(home, call)

    def _members(self, placement: Placement, links: Sequence[ShardLink], home: ShardLink,
                 chain: Sequence[bytes]) -> dict[int, list[bytes]]:
        """Shard index -> its keys of `chain` in chain order, for every shard but the home."""
        parts: dict[int, list[bytes]] = {}
        for key in chain:
            index = placement.shard_index(key)
            if links[index] is not home:
                parts.setdefault(index, []).append(key)
        return parts

    def _follow(self, links: Sequence[ShardLink], calls: dict[int, Callable[[Transport], object]]) -> None:
        """Apply each part's call concurrently; UNAVAILABLE naming the parts missed, after the others
        (MKV-CLU-055)."""
        futures = {index: self.cluster._workers.submit(self.cluster._run_on, links[index], call)
                   for index, call in calls.items()}
        missed = []
        for index, future in futures.items():
            try:
                future.result()
            except MISSED as exc:
                missed.append(f"{links[index].shard.shard_id} ({exc.code.name})")
        if missed:
            raise Unavailable(f"the session's parts on {', '.join(missed)} were missed; the rest applied")

    def _check_stored(self, keys: Sequence[bytes], session: tuple[ShardLink, str] | None = None) -> None:
        """NOT_FOUND, before anything changes, when a key is not stored on its shard (MKV-CLU-051);
        for an append, the session's own error first, as one target gives it (MKV-SES-001)."""
        if not keys or all(self.cluster.exists(keys)):
            return
        if session is not None:
            home, session_id = session
            next_state(self._on_home(home, lambda t: t.session_info(session_id)).state, SessionEvent.APPEND)
        raise NotFound("a key of the session is not stored on its shard")

    def _stored_prefix(self, chain: Sequence[bytes]) -> int:
        """The length of the longest prefix of `chain` whose keys are all stored (MKV-CLU-053)."""
        step = (self.cluster._limits or self.cluster.capabilities().limits).max_batch
        for start in range(0, len(chain), step):
            present = self.cluster.exists(chain[start:start + step])
            if not all(present):
                return start + present.index(False)
        return len(chain)

    # ---- operations ----------------------------------------------------------------------------
    def open(self, ttl_s: float, keys: Sequence[bytes], fingerprint: bytes) -> SessionInfo:
        placement, links = self.cluster._view()
        keys = list(keys)
        anchor = keys[0] if keys and isinstance(keys[0], bytes) else os.urandom(16)
        home = links[placement.shard_index(anchor)]
        self._check_stored(keys)
        session_id = new_session_id(home)
        info = self._on_home(home, lambda t: spanning(t).open_part(session_id, ttl_s, keys, fingerprint, True))
        members = self._members(placement, links, home, keys)
        self._follow(links, {i: _opener(session_id, info, part) for i, part in members.items()})
        return info

    def append(self, session_id: str, keys: Sequence[bytes]) -> SessionInfo:
        keys = [check_key(k) for k in keys]  # the form of the arguments before the session (MKV-NS-009)
        home = self._home(session_id)
        self._check_stored(keys, (home, session_id))
        info = self._on_home(home, lambda t: spanning(t).append_part(session_id, keys, True))
        placement, links = self.cluster._view()
        new = self._members(placement, links, home, keys)
        held = self._members(placement, links, home, info.keys)
        self._follow(links, {i: _appender(session_id, info, new.get(i, []), part) for i, part in held.items()})
        return info

    def suspend(self, session_id: str, pause_ttl_s: float) -> SessionInfo:
        check_ttl(pause_ttl_s, "pause_ttl_s")
        return self._then_parts(session_id, lambda t: t.suspend(session_id, pause_ttl_s))

    def close(self, session_id: str) -> SessionInfo:
        return self._then_parts(session_id, lambda t: t.close_session(session_id))

    def _then_parts(self, session_id: str, call: Callable[[Transport], SessionInfo]) -> SessionInfo:
        """The home first (its answer or error is the operation's), then every other part (MKV-CLU-052)."""
        home = self._home(session_id)
        info = self._on_home(home, call)
        placement, links = self.cluster._view()
        self._follow(links, dict.fromkeys(self._members(placement, links, home, info.keys), call))
        return info

    def fork(self, session_id: str, prefix_len: int | None, ttl_s: float | None) -> SessionInfo:
        check_fork(prefix_len, ttl_s)  # the form of the arguments before the session (MKV-NS-009)
        home = self._home(session_id)
        fork_id = new_session_id(home)
        info = self._on_home(home, lambda t: spanning(t).fork_part(session_id, fork_id, prefix_len, ttl_s))
        placement, links = self.cluster._view()
        members = self._members(placement, links, home, info.keys)
        self._follow(links, {i: _forker(session_id, fork_id, len(part), ttl_s) for i, part in members.items()})
        return info

    def resume(self, session_id: str) -> ResumeResult:
        home = self._home(session_id)
        chain = self._on_home(home, lambda t: t.session_info(session_id)).keys
        valid = self._stored_prefix(chain)
        info = self._on_home(home, lambda t: spanning(t).resume_part(session_id, valid))
        placement, links = self.cluster._view()
        kept = self._members(placement, links, home, chain[:valid])
        members = self._members(placement, links, home, chain)
        self._follow(links, {i: _resumer(session_id, len(kept[i])) if i in kept else _closer(session_id)
                             for i in members})
        return ResumeResult(info, info.keys)

    def info(self, session_id: str) -> SessionInfo:
        return self._on_home(self._home(session_id), lambda t: t.session_info(session_id))

    def invalidate(self, session_id: str) -> int:
        """Every part's blocks, the home's first; the sum of the counts (MKV-CLU-054)."""
        home = self._home(session_id)
        chain = self.info(session_id).keys
        removed = self.cluster._run_on(home, lambda t: t.invalidate_session(session_id))
        placement, links = self.cluster._view()
        counts: dict[int, int] = {}

        def count(index: int) -> Callable[[Transport], object]:
            def call(t: Transport) -> object:
                counts[index] = t.invalidate_session(session_id)
                return counts[index]
            return call

        try:
            self._follow(links, {i: count(i) for i in self._members(placement, links, home, chain)})
        finally:
            removed += sum(counts.values())
        return removed


def _opener(session_id: str, info: SessionInfo, keys: list[bytes]) -> Callable[[Transport], object]:
    return lambda t: spanning(t).open_part(session_id, info.ttl_s, keys, info.fingerprint, False)


def _appender(session_id: str, info: SessionInfo, new: list[bytes], held: list[bytes]
              ) -> Callable[[Transport], object]:
    """Append the new keys (none: the expiry is still renewed); a shard without a part opens one
    with all its keys of the chain (MKV-CLU-051)."""
    def call(t: Transport) -> object:
        try:
            return spanning(t).append_part(session_id, new, False)
        except UnknownSession:
            return spanning(t).open_part(session_id, info.ttl_s, held, info.fingerprint, False)
    return call


def _forker(session_id: str, fork_id: str, count: int, ttl_s: float | None) -> Callable[[Transport], object]:
    return lambda t: spanning(t).fork_part(session_id, fork_id, count, ttl_s)


def _resumer(session_id: str, count: int) -> Callable[[Transport], object]:
    return lambda t: spanning(t).resume_part(session_id, count)


def _closer(session_id: str) -> Callable[[Transport], object]:
    """A part left with no key of the resumed prefix is closed: such a shard holds no part
    (MKV-CLU-050, MKV-CLU-053)."""
    return lambda t: t.close_session(session_id)


__all__ = ["ClusterSessions", "new_session_id", "spanning"]
