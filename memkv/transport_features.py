"""What a transport may offer beyond the `Transport` interface, each a runtime-checkable protocol.

Ask with isinstance, never by looking an attribute up:

    if isinstance(transport, Flushable):
        transport.flush()

The file backend flushes, memkv+tcp and memkv+nixl answer pings, memkv+nixl registers memory.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .buffers import BufferLike


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


__all__ = ["Flushable", "Pingable", "RegistersMemory"]
