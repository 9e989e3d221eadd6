"""The one `stats()` schema of every target (MKV-OPS-019): scoped to the caller's namespace.

Target-wide totals (capacity, used and free bytes, counters such as evictions) are kept; the
per-namespace breakdown is replaced by the caller's own figures, so no other namespace is named.
"""

from __future__ import annotations

from typing import Any, Protocol

from .sessions import SessionInfo


class _Engine(Protocol):
    def stats(self) -> dict[str, Any]: ...

    def sessions(self, namespace: str) -> list[SessionInfo]: ...


def namespace_stats(engine: _Engine, namespace: str) -> dict[str, Any]:
    stats = dict(engine.stats())
    own = stats.pop("namespaces", {}).get(namespace, {"blocks": 0, "bytes": 0})
    sessions: dict[str, int] = {}
    for info in engine.sessions(namespace):
        sessions[info.state.value] = sessions.get(info.state.value, 0) + 1
    stats.update(namespace=namespace, blocks=own["blocks"], bytes=own["bytes"], sessions=sessions)
    return stats
