"""What a transport may offer beyond the `Transport` interface, each a runtime-checkable protocol.

Ask with isinstance, never by looking an attribute up:

    if isinstance(transport, Flushable):
        transport.flush()

The file backend flushes, memkv+tcp and memkv+nixl answer pings and hold parts of cluster sessions,
memkv+nixl registers memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .buffers import BufferLike
from .sessions import SessionInfo


@runtime_checkable
class Flushable(Protocol):
    def flush(self) -> None:
        """Make every acknowledged put durable now, without waiting for the flush window (MKV-DUR-002)."""


@runtime_checkable
class RegistersMemory(Protocol):
    """Memory registered once (an engine's KV pool) moves without copies; a registration is a hint
    a transport may ignore (memkv+nixl does while it runs over its TCP fallback)."""

    def register(self, buffer: BufferLike | object) -> None:
        """Register a buffer, `MemoryRegion`, numpy array or torch tensor."""

    def deregister(self, buffer: BufferLike | object) -> None:
        """Give a registration back (the memory must not be freed before)."""


@runtime_checkable
class Pingable(Protocol):
    def ping(self) -> float:
        """Seconds one round trip to the target took."""


@runtime_checkable
class SpansSessions(Protocol):
    """The parts of a cluster session on one shard (spec/cluster.md section 3a): memkv+tcp and
    memkv+nixl to a server of wire 1.2. Each raises UNSUPPORTED, sending nothing, to an
    older server (MKV-WIRE-055)."""

    def open_part(self, session_id: str, ttl_s: float, keys: Sequence[bytes], fingerprint: bytes,
                  foreign: bool) -> SessionInfo:
        """Open a session under the caller's id; `foreign`: keep keys this shard does not store."""

    def append_part(self, session_id: str, keys: Sequence[bytes], foreign: bool) -> SessionInfo:
        """Append; `foreign` as for open_part."""

    def resume_part(self, session_id: str, prefix_len: int) -> SessionInfo:
        """Resume, cutting the chain to the `prefix_len` keys the caller found valid."""

    def fork_part(self, session_id: str, new_session_id: str, prefix_len: int | None,
                  ttl_s: float | None) -> SessionInfo:
        """Fork under the caller's new id."""


__all__ = ["Flushable", "Pingable", "RegistersMemory", "SpansSessions"]
