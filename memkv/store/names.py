"""The engine's rules for a request's names and times: namespace names (MKV-NS-003) and TTLs."""

from __future__ import annotations

import re

from ..errors import InvalidArgument

NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_TTL_S = 30 * 24 * 3600.0


def check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not NAMESPACE_PATTERN.fullmatch(namespace):
        raise InvalidArgument(f"namespace {namespace!r} must match {NAMESPACE_PATTERN.pattern}")
    return namespace


def check_ttl(ttl_s: float, what: str = "ttl_s") -> float:
    if not isinstance(ttl_s, int | float) or not 0 < ttl_s <= MAX_TTL_S:
        raise InvalidArgument(f"{what} must be in (0, {MAX_TTL_S}] seconds")
    return float(ttl_s)
