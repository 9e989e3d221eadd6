"""The engine's rule for a request's times (the namespace rule is memkv/namespaces.py)."""

from __future__ import annotations

from ..errors import InvalidArgument

MAX_TTL_S = 30 * 24 * 3600.0


def check_ttl(ttl_s: float, what: str = "ttl_s") -> float:
    if not isinstance(ttl_s, int | float) or not 0 < ttl_s <= MAX_TTL_S:
        raise InvalidArgument(f"{what} must be in (0, {MAX_TTL_S}] seconds")
    return float(ttl_s)


def check_fork(prefix_len: int | None, ttl_s: float | None) -> float | None:
    """A fork's arguments, checked before its session is looked at (MKV-NS-009); its TTL or None."""
    if prefix_len is not None and (isinstance(prefix_len, bool) or not isinstance(prefix_len, int)
                                   or prefix_len < 0):
        raise InvalidArgument("prefix_len must be a non-negative integer")
    return None if ttl_s is None else check_ttl(ttl_s)
