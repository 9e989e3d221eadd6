"""The namespace naming rule (spec "Namespaces", MKV-NS-003), shared by every role.

Clients check a name before they send it, servers before they accept it, and the store before it
records it; all three use this one rule.
"""

from __future__ import annotations

import re

from .errors import InvalidArgument

NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def is_namespace(name: object) -> bool:
    return isinstance(name, str) and NAMESPACE_PATTERN.fullmatch(name) is not None


def check_namespace(namespace: str) -> str:
    """`namespace` itself when it follows the rule; INVALID_ARGUMENT otherwise."""
    if not is_namespace(namespace):
        raise InvalidArgument(f"namespace {namespace!r} must match {NAMESPACE_PATTERN.pattern}")
    return namespace
