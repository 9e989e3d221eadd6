"""Optional NVIDIA NIXL support: import, availability, agents, memory and transfer helpers.

NIXL is an optional dependency (`pip install memkv[nixl]`, or `pip install --no-deps nixl-cu12
numpy` to avoid CUDA torch). Nothing here imports it at module import time: `load_api()` tries
the `nixl` meta package, then the `nixl_cu12` / `nixl_cu13` wheels, and caches the outcome.
Every failure becomes `Unsupported` with a reason a person can act on.
"""

from __future__ import annotations

import importlib
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import InvalidArgument, LimitExceeded, MemkvError, Timeout, Unavailable, Unsupported
from .libraries import prepare_environment

_API_MODULES = ("nixl._api", "nixl_cu12._api", "nixl_cu13._api")
INSTALL_HINT = "install it with `pip install --no-deps nixl-cu12 numpy` (or `pip install memkv[nixl]`)"
UCX = "UCX"
MiB = 1024 * 1024
DEFAULT_CHUNK = 2 * MiB
HUGEPAGE = 2 * MiB
_MAP_HUGETLB = getattr(mmap, "MAP_HUGETLB", 0x40000)

_lock = threading.Lock()
_api: Any = None
_api_error: str | None = None


def load_api() -> Any:
    """The NIXL Python API module (`nixl_agent`, `nixl_agent_config`, ...); Unsupported if absent."""
    global _api, _api_error
    with _lock:
        if _api is not None:
            return _api
        if _api_error is not None:
            raise Unsupported(_api_error)
        errors = []
        # Before UCX loads: keep its modules from loading host copies of the wheel's libraries.
        prepare_environment()
        for name in _API_MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError as exc:
                errors.append(f"{name}: {exc}")
                continue
            except Exception as exc:  # a broken wheel (missing shared library, ABI mismatch)
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            if hasattr(module, "nixl_agent") and hasattr(module, "nixl_agent_config"):
                _api = module
                return module
            errors.append(f"{name}: has no nixl_agent")
        _api_error = f"NIXL is not importable ({'; '.join(errors)}); {INSTALL_HINT}"
        raise Unsupported(_api_error)


def availability() -> tuple[bool, str]:
    """(True, module name) when the NIXL Python API imports, else (False, the reason)."""
    try:
        return True, str(load_api().__name__)
    except Unsupported as exc:
        return False, exc.message


def make_agent(name: str, progress_thread: bool = False) -> Any:
    """A thread-safe NIXL agent with the UCX backend, or Unsupported saying why not.

    UCX picks its transports from the environment (`UCX_TLS`): RDMA verbs where the host has
    them, TCP or shared memory otherwise. NIXL's progress thread polls without pause (a whole
    core per agent), so it is off by default: an initiator progresses its transfers while it
    polls them, and a target that must progress (UCX over TCP emulates one-sided operations)
    runs a `Pump` while transfers may be in flight.
    """
    api = load_api()
    config = api.nixl_agent_config(enable_prog_thread=progress_thread, backends=[UCX],
                                   sync_mode=api.nixl_thread_sync_t.NIXL_THREAD_SYNC_STRICT)
    try:
        agent = api.nixl_agent(name, config)
    except Exception as exc:
        raise Unsupported(f"cannot create a NIXL agent: {type(exc).__name__}: {exc}") from None
    if UCX not in getattr(agent, "backends", {}):
        raise Unsupported("NIXL has no UCX backend here (plugin missing or UCX failed to start; "
                          "check NIXL_PLUGIN_DIR and UCX_TLS)")
    return agent


class Pump:
    """Progresses an agent's UCX worker from a thread, only while someone has work in flight."""

    def __init__(self, agent: Any, on_notifs: Callable[[dict[str, list[bytes]]], None] | None = None) -> None:
        self.agent = agent
        self.on_notifs = on_notifs  # gets the notifications each poll drains (else they are dropped)
        self._busy = 0
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def enter(self) -> None:
        with self._cond:
            self._busy += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="memkv-nixl-pump", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def leave(self) -> None:
        with self._cond:
            self._busy -= 1

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._busy > 0 or self._closed)
                if self._closed:
                    return
            while self._busy > 0 and not self._closed:
                try:
                    notifs = self.agent.get_new_notifs()  # progresses the worker (no progress thread)
                except Exception:
                    time.sleep(0.001)
                    continue
                if notifs and self.on_notifs is not None:
                    self.on_notifs(notifs)
                time.sleep(0)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)


_MD_PREFIX = b"nixlSerDes|Agent"
_U64 = struct.Struct("<Q")


def metadata_agent_name(blob: bytes) -> str:
    """The agent name a NIXL metadata blob carries (it must match the declared name)."""
    start = len(_MD_PREFIX)
    if not blob.startswith(_MD_PREFIX) or len(blob) < start + _U64.size:
        raise InvalidArgument("NIXL metadata is not in the expected serialized form")
    (size,) = _U64.unpack_from(blob, start)
    begin = start + _U64.size
    if size > 128 or begin + size > len(blob):
        raise InvalidArgument("NIXL metadata names an agent of impossible length")
    try:
        return blob[begin : begin + size].decode("ascii")
    except UnicodeDecodeError:
        raise InvalidArgument("NIXL metadata names a non-ASCII agent") from None


def mem_type(mem_kind: int) -> str:
    from ..wire.messages import NIXL_MEM_KINDS

    if not 0 <= mem_kind < len(NIXL_MEM_KINDS):
        raise InvalidArgument(f"unknown NIXL memory kind {mem_kind}")
    return NIXL_MEM_KINDS[mem_kind]


def wait_transfer(agent: Any, handle: Any, deadline: float) -> None:
    """Poll a posted transfer until DONE; Unavailable on ERR, Timeout past the deadline.

    Each poll also progresses the agent's UCX worker (agents run without NIXL's progress
    thread), so the loop only yields the GIL between polls instead of sleeping.
    """
    while True:
        state = agent.check_xfer_state(handle)
        if state == "DONE":
            return
        if state == "ERR":
            raise Unavailable("NIXL transfer failed")
        if time.monotonic() > deadline:
            raise Timeout("NIXL transfer did not complete in time")
        time.sleep(0)


def release_handle(agent: Any, handle: Any) -> bool:
    """Release a transfer handle; False when NIXL could not (the memory may still be in use)."""
    try:
        agent.release_xfer_handle(handle)
        return True
    except Exception:
        return False


def transfer(agent: Any, op: str, local: list[tuple[int, int, int]], local_type: str,
             remote: list[tuple[int, int, int]], remote_type: str, peer: str, notif: bytes = b"") -> Any:
    """Post a READ or WRITE (the peer gets `notif` once it is done, when given); returns the handle
    (wait with wait_transfer, then release_handle)."""
    local_descs = agent.get_xfer_descs(local, local_type)
    remote_descs = agent.get_xfer_descs(remote, remote_type)
    handle = agent.initialize_xfer(op, local_descs, remote_descs, peer, notif)
    try:
        state = agent.transfer(handle)
    except BaseException:
        release_handle(agent, handle)
        raise
    if state == "ERR":
        release_handle(agent, handle)
        raise Unavailable(f"NIXL {op} could not be posted")
    return handle


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, MemkvError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def allocate_pinned(size: int, hugepages: bool = True) -> tuple[mmap.mmap, bool]:
    """Anonymous page-aligned memory for staging; 2 MiB hugepages when the host has them free."""
    if size <= 0:
        raise InvalidArgument("staging size must be positive")
    if hugepages and size % HUGEPAGE == 0 and os.name == "posix":
        try:
            flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_HUGETLB
            return mmap.mmap(-1, size, flags=flags), True
        except OSError:
            pass
    return mmap.mmap(-1, size), False


class ChunkPool:
    """A fixed region cut into chunks; contiguous runs of chunks are lent out, first fit.

    Bounded: a request larger than the region is LIMIT_EXCEEDED; one that cannot be served
    within `timeout` is UNAVAILABLE. Nothing is allocated per request.
    """

    def __init__(self, size: int, chunk: int = DEFAULT_CHUNK, hugepages: bool = True) -> None:
        if chunk <= 0 or size < chunk:
            raise InvalidArgument(f"pool of {size} bytes cannot hold a {chunk}-byte chunk")
        self.chunk = chunk
        self.count = size // chunk
        self.size = self.count * chunk
        self.memory, self.hugepages = allocate_pinned(self.size, hugepages)
        self.view = memoryview(self.memory)
        from ..buffers import address_of

        self.address = address_of(self.view)
        self._free = bytearray(b"\x01" * self.count)
        self._cond = threading.Condition()
        self.quarantined = 0

    def _find(self, need: int) -> int:
        run = 0
        for i in range(self.count):
            run = run + 1 if self._free[i] else 0
            if run == need:
                return i - need + 1
        return -1

    def acquire(self, nbytes: int, timeout: float) -> tuple[int, memoryview]:
        """(offset, view of nbytes) of a contiguous run of chunks."""
        need = max(1, -(-nbytes // self.chunk))
        if need > self.count:
            raise LimitExceeded(f"{nbytes} bytes exceed the NIXL staging pool of {self.size} bytes")
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                start = self._find(need)
                if start >= 0:
                    self._free[start : start + need] = bytes(need)
                    offset = start * self.chunk
                    return offset, self.view[offset : offset + nbytes]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Unavailable("NIXL staging memory is busy; retry later")
                self._cond.wait(remaining)

    def release(self, offset: int, nbytes: int) -> None:
        need = max(1, -(-nbytes // self.chunk))
        start = offset // self.chunk
        with self._cond:
            self._free[start : start + need] = b"\x01" * need
            self._cond.notify_all()

    def quarantine(self, offset: int, nbytes: int) -> None:
        """Never lend these chunks again (a transfer into them could not be cancelled)."""
        self.quarantined += max(1, -(-nbytes // self.chunk))

    def in_use(self) -> int:
        with self._cond:
            return (self.count - sum(self._free)) * self.chunk


__all__ = ["DEFAULT_CHUNK", "INSTALL_HINT", "ChunkPool", "Pump", "allocate_pinned", "availability", "load_api",
           "make_agent", "mem_type", "metadata_agent_name", "release_handle", "transfer", "wait_transfer"]
