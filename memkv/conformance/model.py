"""An executable reference model of the spec: what a target must answer, step by step.

Pure Python, no I/O. The state machine in `checks/test_model.py` drives a target and this model
side by side. The model knows why each block is absent (never put, deleted, invalidated by
keys/prefix/session/model/namespace, evicted) so a disagreement is reported against the right
requirement.
"""

from __future__ import annotations

import dataclasses

from memkv.blocks import BlockMeta
from memkv.errors import ErrorCode
from memkv.keys import ROOT_PARENT
from memkv.sessions import TRANSITIONS, SessionEvent, SessionState

E = ErrorCode


@dataclasses.dataclass
class ModelBlock:
    data: bytes
    meta: BlockMeta


@dataclasses.dataclass
class ModelSession:
    sid: str
    ns: int
    state: SessionState
    keys: tuple[bytes, ...]


@dataclasses.dataclass
class ModelLease:
    ns: int
    keys: tuple[bytes, ...]
    live: bool = True
    #: the requirement a release after the end must follow when the lease ended without a release:
    #: MKV-OPS-008 (it expired) or MKV-OPS-018 (the target restarted)
    ended_by: str | None = None


class Model:
    """Blocks, sessions and leases of a few namespaces (indexed 0..n-1)."""

    def __init__(self, namespaces: int, prefix_from_absent_keys: bool = True) -> None:
        self.prefix_from_absent_keys = prefix_from_absent_keys  # MKV-INV-008, from spec 1.2
        self.blocks: list[dict[bytes, ModelBlock]] = [{} for _ in range(namespaces)]
        self.gone: list[dict[bytes, str]] = [{} for _ in range(namespaces)]
        self.sessions: dict[str, ModelSession] = {}
        self.leases: dict[str, ModelLease] = {}

    # ---- blocks -----------------------------------------------------------------------------
    def present(self, ns: int, key: bytes) -> bool:
        return key in self.blocks[ns]

    def put(self, ns: int, key: bytes, data: bytes, meta: BlockMeta) -> ErrorCode:
        block = self.blocks[ns].get(key)
        if block is not None:
            return E.OK if block.data == data else E.KEY_CONFLICT
        self.blocks[ns][key] = ModelBlock(data, meta)
        self.gone[ns].pop(key, None)
        return E.OK

    def remove(self, ns: int, key: bytes, reason: str) -> bool:
        if self.blocks[ns].pop(key, None) is None:
            return False
        self.gone[ns][key] = reason
        return True

    def protected_by(self, ns: int, key: bytes) -> str | None:
        """The requirement that forbids evicting this block now, if any."""
        for session in self.sessions.values():
            if session.ns == ns and session.state is SessionState.SUSPENDED and key in session.keys:
                return "MKV-SES-004"
        for lease in self.leases.values():
            if lease.live and lease.ns == ns and key in lease.keys:
                return "MKV-OPS-007"
        return None

    def may_be_pinned(self, ns: int, key: bytes) -> bool:
        """Protected now, or pinned by a session that expired: a target notices an expiry at the next
        operation on the session or within its sweep interval (MKV-SES-008), so until then its pins
        may still hold.
        The same holds for an expired lease, which a target may drop lazily."""
        return self.protected_by(ns, key) is not None or any(
            s.ns == ns and s.state is SessionState.EXPIRED and key in s.keys for s in self.sessions.values()) or any(
            lease.ended_by == "MKV-OPS-008" and lease.ns == ns and key in lease.keys for lease in self.leases.values())

    def protected_bytes(self, granule: int = 1) -> int:
        """Bytes no eviction may free: protected blocks and every stored block they are chained
        after (MKV-CAP-006: a block never goes before a block chained after it), each counted as at
        least `granule` bytes (a target stores a block in whole allocation units)."""
        kept: set[tuple[int, bytes]] = set()
        for ns, blocks in enumerate(self.blocks):
            for key in blocks:
                if not self.may_be_pinned(ns, key):
                    continue
                at: bytes | None = key
                while at is not None and at in blocks and (ns, at) not in kept:
                    kept.add((ns, at))
                    at = blocks[at].meta.parent
        return sum(max(granule, len(self.blocks[ns][key].data)) for ns, key in kept)

    def lookup(self, ns: int, keys: list[bytes]) -> int:
        prefix = 0
        for key in keys:
            if key not in self.blocks[ns]:
                break
            prefix += 1
        return prefix

    def descendants(self, ns: int, key: bytes) -> list[bytes]:
        """`key` when stored, and every stored block chained after it through stored blocks, whether
        `key` itself is stored or not (MKV-INV-008; before spec 1.2, nothing when it is not stored)."""
        if key not in self.blocks[ns] and not self.prefix_from_absent_keys:
            return []
        found = [key] if key in self.blocks[ns] else []
        seen = {key}
        frontier = [key] if key != ROOT_PARENT else []  # the root is no block's parent
        while frontier:
            parent = frontier.pop()
            for child, block in self.blocks[ns].items():
                if block.meta.parent == parent and child not in seen:
                    seen.add(child)
                    found.append(child)
                    frontier.append(child)
        return found

    def invalidate_namespace(self, ns: int) -> int:
        count = 0
        for key in list(self.blocks[ns]):
            count += self.remove(ns, key, "MKV-INV-005")
        for sid in [s for s, m in self.sessions.items() if m.ns == ns]:
            del self.sessions[sid]
        for lease in self.leases.values():
            if lease.ns == ns:
                lease.live = False
        return count

    # ---- sessions ---------------------------------------------------------------------------
    def session_outcome(self, sid: str, ns: int, event: SessionEvent) -> ErrorCode:
        session = self.sessions.get(sid)
        if session is None or session.ns != ns:
            return E.UNKNOWN_SESSION
        if session.state is SessionState.EXPIRED:
            return E.SESSION_EXPIRED
        return E.OK if (session.state, event) in TRANSITIONS else E.INVALID_SESSION_STATE

    def apply(self, sid: str, event: SessionEvent) -> None:
        session = self.sessions[sid]
        session.state = TRANSITIONS[(session.state, event)]
        if session.state is SessionState.CLOSED:
            del self.sessions[sid]

    def expire(self, sid: str) -> None:
        """The session's expiry has passed: it is kept, in state expired, with SESSION_EXPIRED for
        every state-changing operation (MKV-SES-008)."""
        self.sessions[sid].state = SessionState.EXPIRED

    def expire_lease(self, lease_id: str) -> None:
        self.leases[lease_id].live = False
        self.leases[lease_id].ended_by = "MKV-OPS-008"

    def restart(self) -> None:
        """A clean restart: blocks and sessions stay (MKV-DUR-001), every lease is gone (MKV-OPS-018)."""
        for lease in self.leases.values():
            if lease.live or lease.ended_by is not None:
                lease.live, lease.ended_by = False, "MKV-OPS-018"

    def valid_prefix(self, session: ModelSession) -> tuple[bytes, ...]:
        prefix = self.lookup(session.ns, list(session.keys))
        return session.keys[:prefix]


__all__ = ["Model", "ModelBlock", "ModelLease", "ModelSession"]
