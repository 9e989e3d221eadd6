"""The one place memkv touches the NIXL Python API: a typed agent whose failures are spec errors.

NIXL is optional (`pip install memkv[nixl]`, or `pip install --no-deps nixl-cu12 numpy` to avoid
CUDA torch) and imported on first use: `load_api()` tries the `nixl` meta package, then the
`nixl_cu12` / `nixl_cu13` wheels, and caches the outcome. The library reports failures with its
own exception classes (one per status, no common base) and Python's; `NixlAgent` turns each
into the memkv error that says what it means for the caller, so no other module catches them.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Literal, Protocol, TypeVar

from ..errors import InvalidArgument, MemkvError, Timeout, Unavailable, Unsupported
from ..memory_kind import MemoryKind
from .libraries import prepare_environment

log = logging.getLogger("memkv.nixl")

_API_MODULES = ("nixl._api", "nixl_cu12._api", "nixl_cu13._api")
INSTALL_HINT = "install it with `pip install --no-deps nixl-cu12 numpy` (or `pip install memkv[nixl]`)"
UCX = "UCX"

Region = tuple[int, int, int]
# NIXL's object-storage segment: a transfer's far side for the OBJ backend (not a memory kind of the wire)
OBJ: Literal["OBJ"] = "OBJ"
Segment = MemoryKind | Literal["OBJ"]
"""(address, length, device id) of one side of a transfer."""
Operation = Literal["READ", "WRITE"]
T = TypeVar("T")

_lock = threading.Lock()
_api: ModuleType | None = None
_api_error: str | None = None


def load_api() -> ModuleType:
    """The NIXL Python API module; Unsupported, with the install hint, where it does not import."""
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
                _logs_to_stderr()
                _api = module
                return module
            errors.append(f"{name}: has no nixl_agent")
        _api_error = f"NIXL is not importable ({'; '.join(errors)}); {INSTALL_HINT}"
        raise Unsupported(_api_error)


def _logs_to_stderr() -> None:
    """NIXL's Python logger prints its INFO lines to standard output, where they would mix with what
    the program itself prints there (`memkv bench --json`, a conformance worker's records, a user's
    own output); they go to standard error instead, as log lines do."""
    for handler in logging.getLogger("nixl").handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)


def availability() -> tuple[bool, str]:
    """(True, module name) when the NIXL Python API imports, else (False, the reason)."""
    try:
        return True, load_api().__name__
    except Unsupported as exc:
        return False, exc.message


class _RawAgent(Protocol):
    """The part of NIXL's `nixl_agent` memkv uses (its descriptor lists and handles stay opaque)."""

    backends: dict[str, object]

    def register_memory(self, regions: list[tuple[int, int, int, str]], mem_type: str) -> object: ...
    def deregister_memory(self, registered: object) -> None: ...
    def get_agent_metadata(self) -> bytes: ...
    def add_remote_agent(self, metadata: bytes) -> bytes | str: ...
    def remove_remote_agent(self, agent: str) -> None: ...
    def get_xfer_descs(self, descs: list[Region], mem_type: str) -> object: ...
    def initialize_xfer(self, operation: str, local: object, remote: object, peer: str, notif: bytes) -> object: ...
    def transfer(self, handle: object) -> str: ...
    def check_xfer_state(self, handle: object) -> str: ...
    def release_xfer_handle(self, handle: object) -> None: ...
    def get_new_notifs(self) -> dict[str, list[bytes]]: ...
    def get_plugin_list(self) -> list[str]: ...
    def create_backend(self, backend: str, params: dict[str, str]) -> object: ...
    def query_memory(self, regions: list[tuple[int, int, int, str]], backend: str, mem_type: str) -> list[object]: ...


def _segment_name(segment: Segment) -> str:
    return segment if isinstance(segment, str) else segment.name


@contextlib.contextmanager
def nixl_errors(error: type[MemkvError], what: str) -> Iterator[None]:
    """The boundary: a failure of the NIXL library inside becomes `error` saying `what` failed."""
    try:
        yield
    except MemkvError:
        raise
    except Exception as exc:  # NIXL's status exceptions share no base class
        raise error(f"{what}: {type(exc).__name__}: {exc}") from None


def _best_effort(what: str, call: Callable[[T], None], argument: T) -> bool:
    """call(argument); False, logged, where NIXL failed (a clean-up the caller cannot retry)."""
    try:
        with nixl_errors(Unavailable, what):
            call(argument)
    except Unavailable as exc:
        log.debug("%s", exc.message)
        return False
    return True


class Registration:
    """Memory registered with an agent (give it back with `NixlAgent.deregister`)."""

    __slots__ = ("_descs", "length")

    def __init__(self, descs: object, length: int) -> None:
        self._descs = descs
        self.length = length


class Transfer:
    """A posted READ or WRITE (wait for it, then release it)."""

    __slots__ = ("_handle", "operation")

    def __init__(self, handle: object, operation: Operation) -> None:
        self._handle = handle
        self.operation = operation


class NixlAgent:
    """A thread-safe NIXL agent with the UCX backend.

    UCX picks its transports from the environment (`UCX_TLS`): RDMA verbs where the host has
    them, TCP or shared memory otherwise. NIXL's progress thread polls without pause (a whole
    core per agent), so it is off by default: an initiator progresses its transfers while it
    waits for them, and a target that must progress (UCX over TCP emulates one-sided operations)
    runs a `memkv.nixl.support.Pump` while transfers may be in flight.
    """

    def __init__(self, name: str, progress_thread: bool = False, backend: str = UCX,
                 params: dict[str, str] | None = None) -> None:
        """An agent with one backend: UCX (the default), or another NIXL plugin such as OBJ, created
        with its `params`."""
        api = load_api()
        with nixl_errors(Unsupported, "cannot create a NIXL agent"):
            config = api.nixl_agent_config(enable_prog_thread=progress_thread,
                                           backends=[UCX] if backend == UCX else [],
                                           sync_mode=api.nixl_thread_sync_t.NIXL_THREAD_SYNC_STRICT)
            raw: _RawAgent = api.nixl_agent(name, config)
            if backend != UCX:
                if backend not in raw.get_plugin_list():
                    raise Unsupported(f"this NIXL build has no {backend} plugin")
                raw.create_backend(backend, dict(params or {}))
            backends = raw.backends
        if backend not in backends:
            raise Unsupported(f"NIXL has no {backend} backend here (plugin missing or it failed to start; "
                              "check NIXL_PLUGIN_DIR and, for UCX, UCX_TLS)")
        self.name = name
        self._raw = raw

    # ---- memory and peers ------------------------------------------------------------------
    def register(self, address: int, length: int, device_id: int = 0,
                 kind: MemoryKind = MemoryKind.DRAM) -> Registration:
        """Register memory as a transfer's local side; InvalidArgument where NIXL refuses it."""
        with nixl_errors(InvalidArgument, f"NIXL cannot register {length} bytes at {address:#x}"):
            return Registration(self._raw.register_memory([(address, length, device_id, "")], kind.name), length)

    def register_regions(self, regions: list[tuple[int, int, int, str]], segment: Segment) -> Registration:
        """Register several regions (address, length, device id, metadata) of one segment at once."""
        with nixl_errors(InvalidArgument, f"NIXL cannot register {len(regions)} {_segment_name(segment)} regions"):
            return Registration(self._raw.register_memory(regions, _segment_name(segment)),
                                sum(length for _, length, _, _ in regions))

    def query(self, regions: list[tuple[int, int, int, str]], segment: Segment) -> list[bool]:
        """Whether the backend holds each region (for OBJ: whether each object exists)."""
        name = _segment_name(segment)
        with nixl_errors(Unavailable, f"NIXL could not query {len(regions)} {name} regions"):
            answers = self._raw.query_memory(regions, name, name)
        return [answer is not None for answer in answers]

    def deregister(self, registration: Registration) -> bool:
        """Give memory back; False (logged) when NIXL refused, which leaves it registered."""
        return _best_effort("NIXL deregistration failed", self._raw.deregister_memory, registration._descs)

    def metadata(self) -> bytes:
        """This agent's metadata, for a peer to load (it lists every current registration)."""
        with nixl_errors(Unavailable, "NIXL cannot describe its agent"):
            return bytes(self._raw.get_agent_metadata())

    def add_peer(self, metadata: bytes) -> str:
        """Load a peer agent's metadata; the name NIXL loaded it under."""
        with nixl_errors(InvalidArgument, "NIXL could not load the agent metadata"):
            loaded = self._raw.add_remote_agent(metadata)
        return loaded.decode("ascii", "replace") if isinstance(loaded, bytes) else str(loaded)

    def remove_peer(self, name: str) -> bool:
        """Forget a peer agent; False (logged) when NIXL refused."""
        return _best_effort(f"removing NIXL agent {name}", self._raw.remove_remote_agent, name)

    def notifications(self) -> dict[str, list[bytes]]:
        """Notifications that arrived since the last call, by peer; also progresses the UCX worker."""
        with nixl_errors(Unavailable, "NIXL could not poll its notifications"):
            return self._raw.get_new_notifs()

    # ---- transfers ---------------------------------------------------------------------------
    def post(self, operation: Operation, local: list[Region], local_kind: Segment, remote: list[Region],
             remote_kind: Segment, peer: str, notif: bytes = b"") -> Transfer:
        """Post a READ or WRITE between local and `peer`'s memory (the peer gets `notif` once it is
        done, when given). InvalidArgument where NIXL refuses the regions (not registered on either
        side), Unavailable where the transfer cannot be posted."""
        raw = self._raw
        with nixl_errors(InvalidArgument, f"NIXL refused the {operation}"):
            handle = raw.initialize_xfer(operation, raw.get_xfer_descs(local, _segment_name(local_kind)),
                                         raw.get_xfer_descs(remote, _segment_name(remote_kind)), peer, notif)
        posted = Transfer(handle, operation)
        try:
            with nixl_errors(Unavailable, f"NIXL {operation} could not be posted"):
                state = raw.transfer(handle)
        except Unavailable:
            self.release(posted)
            raise
        if state == "ERR":
            self.release(posted)
            raise Unavailable(f"NIXL {operation} could not be posted")
        return posted

    def wait(self, transfer: Transfer, deadline: float, pause_s: float = 0.0,
             stop: Callable[[], bool] | None = None) -> bool:
        """Poll a posted transfer until it is done (True), or until `stop()` says to give up on it
        (False); Unavailable when it failed, Timeout past the deadline.

        Each poll also progresses the agent's UCX worker (agents run without NIXL's progress
        thread), so the loop only yields the GIL between polls instead of sleeping; a backend that
        progresses in threads of its own (OBJ) is polled every `pause_s`.
        """
        while True:
            with nixl_errors(Unavailable, "NIXL transfer failed"):
                state = self._raw.check_xfer_state(transfer._handle)
            if state == "DONE":
                return True
            if state == "ERR":
                raise Unavailable("NIXL transfer failed")
            if stop is not None and stop():
                return False
            if time.monotonic() > deadline:
                raise Timeout("NIXL transfer did not complete in time")
            time.sleep(pause_s)

    def release(self, transfer: Transfer) -> bool:
        """Release a transfer; False when NIXL could not (its memory may still be in use)."""
        return _best_effort("NIXL could not release a transfer", self._raw.release_xfer_handle, transfer._handle)


__all__ = ["INSTALL_HINT", "OBJ", "NixlAgent", "Operation", "Region", "Registration", "Segment", "Transfer",
           "availability", "load_api"]
