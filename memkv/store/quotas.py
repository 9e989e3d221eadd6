"""Per-namespace quotas (MKV-NS-010): stored bytes, pinned bytes, live sessions, live leases.

A quota is set by the operator (the server reads them from its keys file); a namespace without
one shares the whole store (MKV-NS-004). The engine enforces them: a put over the byte quota
first evicts the namespace's own least recently used unprotected blocks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import InvalidArgument
from ..units import parse_size

FIELDS = ("bytes", "pinned_bytes", "sessions", "leases")


@dataclasses.dataclass(frozen=True, slots=True)
class Quota:
    bytes: int | None = None
    pinned_bytes: int | None = None
    sessions: int | None = None
    leases: int | None = None


def parse_quotas(data: Any) -> dict[str, Quota]:
    """`{namespace: {bytes: "4GiB", pinned_bytes: ..., sessions: 100, leases: 1000}}`; every field optional."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidArgument("quotas maps each namespace to {bytes, pinned_bytes, sessions, leases}")
    quotas = {}
    for namespace, entry in data.items():
        if not isinstance(entry, dict) or not set(entry) <= set(FIELDS):
            raise InvalidArgument(f"the quota of {namespace} has only the fields {', '.join(FIELDS)}")
        values: dict[str, int] = {}
        for name, value in entry.items():
            if not isinstance(value, str | int):
                raise InvalidArgument(f"quota {name} of {namespace} must be a non-negative integer")
            number = parse_size(value) if name.endswith("bytes") else value
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise InvalidArgument(f"quota {name} of {namespace} must be a non-negative integer")
            values[name] = number
        quotas[str(namespace)] = Quota(**values)
    return quotas
