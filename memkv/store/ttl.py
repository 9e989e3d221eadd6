"""The engine's rule for a request's times (the namespace rule is memkv/namespaces.py)."""

from __future__ import annotations

from ..errors import InvalidArgument

MAX_TTL_S = 30 * 24 * 3600.0


def check_ttl(ttl_s: float, what: str = "ttl_s") -> float:
    if not isinstance(ttl_s, int | float) or not 0 < ttl_s <= MAX_TTL_S:
        raise InvalidArgument(f"{what} must be in (0, {MAX_TTL_S}] seconds")
    return float(ttl_s)
