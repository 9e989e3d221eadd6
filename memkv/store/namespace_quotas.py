"""The operator's per-namespace quotas (MKV-NS-010) checked against what the store holds.

Not thread-safe on its own: StorageEngine calls it under its lock.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import CapacityExceeded, LimitExceeded
from .protection import PinsAndLeases
from .quotas import Quota
from .resident import ResidentBlocks


class NamespaceQuotas:
    def __init__(self, resident: ResidentBlocks, protection: PinsAndLeases) -> None:
        self.resident, self.protection = resident, protection
        self.quotas: dict[str, Quota] = {}  # set by the operator

    def byte_quota(self, namespace: str) -> int | None:
        quota = self.quotas.get(namespace)
        return None if quota is None else quota.bytes

    def room(self, namespace: str) -> float:
        """Bytes the namespace may still store without evicting; inf without a byte quota."""
        limit = self.byte_quota(namespace)
        return float("inf") if limit is None else limit - self.resident.namespace_bytes[namespace]

    def has_quota(self, namespace: str) -> bool:
        return namespace in self.quotas

    def check_count(self, namespace: str, field: str, live: int) -> None:
        """LIMIT_EXCEEDED when one more session or lease would pass the namespace's quota."""
        quota = self.quotas.get(namespace)
        limit = None if quota is None else getattr(quota, field)
        if limit is not None and live + 1 > limit:
            raise LimitExceeded(f"namespace {namespace} holds its quota of {limit} {field}")

    def check_pinned(self, namespace: str, keys: Sequence[bytes]) -> None:
        """CAPACITY_EXCEEDED when pinning `keys` would pass the namespace's pinned-bytes quota."""
        quota = self.quotas.get(namespace)
        if quota is None or quota.pinned_bytes is None:
            return
        pinned = self.protection.pinned_in(namespace)
        adding = {(namespace, key) for key in keys} - pinned
        total = sum(self.resident.length(b) for b in pinned | adding if b in self.resident)
        if total > quota.pinned_bytes:
            raise CapacityExceeded(f"namespace {namespace} would pin {total} bytes; its quota is "
                                   f"{quota.pinned_bytes}")
