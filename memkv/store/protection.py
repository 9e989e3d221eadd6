"""What keeps blocks from eviction: the pins of sessions (MKV-SES-*) and the leases of lookups
(MKV-OPS-012). Pins follow a session's committed row; leases live in memory only.

Not thread-safe on its own: StorageEngine calls it under its lock.
"""

from __future__ import annotations

import collections
import dataclasses
import uuid
from collections.abc import Sequence

from .index import SessionRow
from .resident import BlockId

SessionId = tuple[str, str]


@dataclasses.dataclass(slots=True)
class Lease:
    namespace: str
    keys: tuple[bytes, ...]
    expires_at: float


class PinsAndLeases:
    def __init__(self) -> None:
        self.pins: collections.Counter[BlockId] = collections.Counter()
        # Sessions holding pins, until when: a suspended session's pause may run out (MKV-SES-008).
        self.pinned_until: dict[SessionId, float] = {}
        self.leased: collections.Counter[BlockId] = collections.Counter()
        self.leases: dict[str, Lease] = {}

    def protects(self, block_id: BlockId) -> bool:
        return block_id in self.pins or block_id in self.leased

    def pin(self, session: SessionRow, delta: int) -> None:
        """Count one pin per occurrence of a key in the chain; unpinning uses the same chain."""
        if delta > 0:
            self.pinned_until[(session.namespace, session.session_id)] = session.expires_at
        else:
            self.pinned_until.pop((session.namespace, session.session_id), None)
        for key in session.keys:
            block_id = (session.namespace, key)
            self.pins[block_id] += delta
            if self.pins[block_id] <= 0:
                del self.pins[block_id]

    def pinned_in(self, namespace: str) -> set[BlockId]:
        return {block_id for block_id in self.pins if block_id[0] == namespace}

    def sessions_due(self, now: float) -> list[SessionId]:
        """Pinning sessions whose time may have run out."""
        return [session for session, until in self.pinned_until.items() if until <= now]

    def add_lease(self, namespace: str, keys: Sequence[bytes], expires_at: float) -> str:
        lease_id = uuid.uuid4().hex
        lease = Lease(namespace, tuple(keys), expires_at)
        self.leases[lease_id] = lease
        for key in lease.keys:
            self.leased[(namespace, key)] += 1
        return lease_id

    def drop_lease(self, lease_id: str) -> None:
        lease = self.leases.pop(lease_id)
        for key in lease.keys:
            block_id = (lease.namespace, key)
            self.leased[block_id] -= 1
            if self.leased[block_id] <= 0:
                del self.leased[block_id]

    def expire_leases(self, now: float) -> None:
        for lease_id in [i for i, lease in self.leases.items() if lease.expires_at <= now]:
            self.drop_lease(lease_id)

    def leases_in(self, namespace: str) -> list[str]:
        return [i for i, lease in self.leases.items() if lease.namespace == namespace]
