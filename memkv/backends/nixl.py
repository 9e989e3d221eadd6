"""The memkv+nixl client: control over the signed wire protocol, block bytes moved by NVIDIA NIXL.

`memkv.connect("memkv+nixl://host:9900", namespace="team-a", key="<key id>:<secret>")`.

Everything but the bulk bytes goes through a memkv+tcp client this transport holds (lookup,
sessions, invalidation, stat, errors), which also carries the payloads when NIXL is unavailable.
put and get_into register the caller's memory with this process's NIXL agent and send
descriptors (address, length, and for puts the XXH3-64 checksum) in a NIXL_PUT / NIXL_GET frame;
the server NIXL-READs or NIXL-WRITEs that memory (spec/wire.md section 8). The agent's metadata
goes to the server as bytes in NIXL_HELLO, again on each connection and after each new
registration.

Memory, fastest first:
- regions registered once with `register()` (an engine's KV pool): any buffer or MemoryRegion
  inside one moves with zero copies;
- MemoryRegion descriptors, numpy arrays and torch tensors (CPU or CUDA): registered on first
  use and kept registered (least recently used first out past `register_cache` bytes; the
  transport keeps a reference to the array or tensor while it is registered);
- any other buffer (bytes, bytearray, memoryview): copied through a registered bounce buffer.

Transport selection (`transport=` option, `?transport=` in the URL or MEMKV_TRANSPORT): `auto`
(default) uses NIXL and falls back to the TCP data path with one RuntimeWarning when NIXL, its
UCX backend or the server's NIXL side is unavailable; `nixl` raises Unsupported instead.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
import sys
import threading
import uuid
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..blocks import Limits
from ..buffers import BufferLike, MemoryRegion, address_of, aligned_buffer, readable_view, writable_view
from ..checksum import payload_checksum
from ..children import ChildPage
from ..errors import (
    ErrorCode,
    Internal,
    InvalidArgument,
    MemkvError,
    ProtocolError,
    Unsupported,
)
from ..keys import check_key
from ..memory_kind import MemoryKind
from ..nixl.agent import NixlAgent, Registration
from ..nixl.support import Pump, metadata_agent_name
from ..sessions import SessionInfo
from ..transport import Capabilities, GetResult, ItemResult, PutItem
from ..units import parse_size
from ..wire import messages as msg
from ..wire import records as rec
from ..wire.opcodes import Opcode
from ..wrapper_transport import WrapperTransport
from .nixl_credits import CreditBook, CreditPut
from .nixl_write import ClientDrivenPut
from .tcp import DEFAULT_PORT, Reply, TcpConnection, TcpTransport, check_options, pop_credential

R = TypeVar("R", ItemResult, GetResult)
T = TypeVar("T")

MiB = 1024 * 1024
MODES = ("auto", "nixl")
PUT_PATHS = ("auto", "read", "write")
PROBE_BYTES = 64
DEFAULT_REGISTER_CACHE = 4096 * MiB
DEFAULT_BOUNCE_CACHE = 256 * MiB


@dataclasses.dataclass(slots=True)
class _Registration:
    descs: Registration
    length: int
    owner: object = None  # the array or tensor, kept alive while its memory is registered
    pins: int = 0


@dataclasses.dataclass(slots=True)
class _Slot:
    """Where one item's bytes live for the server: a registered region, maybe a bounce copy."""

    address: int = 0
    length: int = 0
    device_id: int = 0
    kind: MemoryKind = MemoryKind.DRAM
    host: memoryview | None = None       # host view of the registered bytes (None for VRAM)
    user: memoryview | None = None       # the caller's buffer when `host` is a bounce copy
    release: Callable[[], None] | None = None

    def done(self) -> None:
        release, self.release = self.release, None
        if release is not None:
            release()


class _Memory:
    """This process's NIXL agent and what is registered with it; thread-safe."""

    def __init__(self, agent: NixlAgent, register_cache: int, bounce_cache: int) -> None:
        self.agent = agent
        self.register_cache = register_cache
        self.bounce_cache = bounce_cache
        self.epoch = 0
        self._lock = threading.RLock()
        self._explicit: dict[tuple[int, int, int, int], _Registration] = {}
        self._auto: collections.OrderedDict[tuple[int, int, int, int], _Registration] = collections.OrderedDict()
        self._auto_bytes = 0
        self._bounce: dict[int, list[tuple[memoryview, int]]] = {}
        self._bounce_bytes = 0
        self._bounce_regs: dict[int, Registration] = {}

    # ---- registration ---------------------------------------------------------------------------
    def _register(self, address: int, length: int, device_id: int, kind: MemoryKind) -> Registration:
        registration = self.agent.register(address, length, device_id, kind)
        self.epoch += 1
        return registration

    def _deregister(self, registration: Registration) -> None:
        self.agent.deregister(registration)

    def register(self, address: int, length: int, device_id: int, kind: MemoryKind) -> None:
        with self._lock:
            key = (address, length, device_id, kind)
            if key not in self._explicit:
                self._explicit[key] = _Registration(self._register(address, length, device_id, kind), length)

    def deregister(self, address: int, length: int, device_id: int, kind: MemoryKind) -> bool:
        with self._lock:
            reg = self._explicit.pop((address, length, device_id, kind), None)
        if reg is not None:
            self._deregister(reg.descs)
        return reg is not None

    def _covering(self, address: int, length: int, device_id: int, kind: MemoryKind) -> _Registration | None:
        for table in (self._explicit, self._auto):
            for (start, size, dev, knd), reg in table.items():
                if dev == device_id and knd == kind and start <= address and address + length <= start + size:
                    return reg
        return None

    def pin(self, address: int, length: int, device_id: int, kind: MemoryKind, owner: object
            ) -> Callable[[], None]:
        """Make sure [address, address + length) is registered; the callback unpins it."""
        with self._lock:
            reg = self._covering(address, length, device_id, kind)
            if reg is None:
                key = (address, length, device_id, kind)
                reg = self._auto[key] = _Registration(self._register(address, length, device_id, kind), length,
                                                      owner)
                self._auto_bytes += length
                self._evict()
            elif (address, length, device_id, kind) in self._auto:
                self._auto.move_to_end((address, length, device_id, kind))
            reg.pins += 1
        pinned = reg

        def unpin() -> None:
            with self._lock:
                pinned.pins -= 1
                self._evict()

        return unpin

    def _evict(self) -> None:
        while self._auto_bytes > self.register_cache:
            victim = next(((k, r) for k, r in self._auto.items() if r.pins == 0), None)
            if victim is None:
                return
            del self._auto[victim[0]]
            self._auto_bytes -= victim[1].length
            self._deregister(victim[1].descs)

    def covered(self, address: int, length: int, device_id: int = 0, kind: MemoryKind = MemoryKind.DRAM) -> bool:
        with self._lock:
            return self._covering(address, length, device_id, kind) is not None

    # ---- bounce buffers (registered host memory for buffers that are not) -------------------------
    def bounce(self, size: int) -> tuple[memoryview, int, Callable[[], None]]:
        with self._lock:
            free = self._bounce.get(size)
            if free:
                view, address = free.pop()
                self._bounce_bytes -= size
            else:
                view = aligned_buffer(size)
                address = address_of(view)
                self._bounce_regs[address] = self._register(address, size, 0, MemoryKind.DRAM)

        def give_back() -> None:
            with self._lock:
                if self._bounce_bytes + size <= self.bounce_cache and address in self._bounce_regs:
                    self._bounce.setdefault(size, []).append((view, address))
                    self._bounce_bytes += size
                    return
                descs = self._bounce_regs.pop(address, None)
            if descs is not None:
                self._deregister(descs)

        return view, address, give_back

    def metadata(self) -> tuple[int, bytes]:
        with self._lock:
            return self.epoch, self.agent.metadata()

    def close(self) -> None:
        with self._lock:
            regs = [r.descs for r in self._explicit.values()] + [r.descs for r in self._auto.values()]
            regs += list(self._bounce_regs.values())
            self._explicit.clear()
            self._auto.clear()
            self._bounce_regs.clear()
            self._bounce.clear()
        for descs in regs:
            self._deregister(descs)


def _torch_tensor(buffer: object) -> Any:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(buffer, torch.Tensor):
        return buffer
    return None


def _numpy_array(buffer: object) -> Any:
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(buffer, numpy.ndarray):
        return buffer
    return None


def _read_only(owner: object) -> bool:
    array = _numpy_array(owner)
    return array is not None and not array.flags.writeable


def describe_memory(buffer: object) -> tuple[int, int, int, MemoryKind, object]:
    """(address, length, device id, memory kind, owner) of memory NIXL can register as it is.

    Raises LookupError for a buffer that has to go through a bounce copy.
    """
    if isinstance(buffer, MemoryRegion):
        if buffer.address <= 0 or buffer.length < 0:
            raise InvalidArgument("memory region needs a positive address and non-negative length")
        kind = MemoryKind.DRAM if buffer.device_id == 0 else MemoryKind.VRAM
        return buffer.address, buffer.length, buffer.device_id, kind, None
    tensor = _torch_tensor(buffer)
    if tensor is not None:
        if not tensor.is_contiguous():
            raise InvalidArgument("tensor must be contiguous")
        length = int(tensor.numel() * tensor.element_size())
        if tensor.is_cuda:
            return int(tensor.data_ptr()), length, int(tensor.device.index or 0), MemoryKind.VRAM, tensor
        return int(tensor.data_ptr()), length, 0, MemoryKind.DRAM, tensor
    array = _numpy_array(buffer)
    if array is not None and array.flags.c_contiguous:
        return int(array.ctypes.data), int(array.nbytes), 0, MemoryKind.DRAM, array
    raise LookupError


class NixlTransport(WrapperTransport):
    """A namespace of a memkv server: block payloads over NIXL, everything else through `control`,
    a memkv+tcp client (which also moves the payloads while NIXL is unavailable)."""

    def __init__(self, host: str, port: int = DEFAULT_PORT, namespace: str = "default",
                 key: str | tuple[str, bytes] | None = None, transport: str = "auto", pool_size: int = 4,
                 timeout: float = 120.0, connect_timeout: float = 10.0,
                 register_cache: int = DEFAULT_REGISTER_CACHE, bounce_cache: int = DEFAULT_BOUNCE_CACHE,
                 put_path: str = "auto") -> None:
        if transport not in MODES:
            raise InvalidArgument(f"memkv+nixl transport must be one of {', '.join(MODES)}, not {transport!r}")
        if put_path not in PUT_PATHS:
            raise InvalidArgument(f"memkv+nixl put_path must be one of {', '.join(PUT_PATHS)}, not {put_path!r}")
        self.mode = transport
        self.put_path = put_path
        self.server_put_path = "read"  # what the server's NIXL_HELLO answer asks for (MKV-WIRE-035)
        self.server_staging, self.server_chunk = 0, 1  # the server's staging pool (NIXL_HELLO answer)
        self._server_loaded = False
        self._credits = CreditBook()  # standing staging credits per control connection (MKV-WIRE-036)
        self.agent_name = f"memkv-client-{uuid.uuid4().hex}"
        self._memory: _Memory | None = None
        self._agent: NixlAgent | None = None
        self._pump: Pump | None = None
        self._hello_lock = threading.Lock()
        self._sent_epoch: weakref.WeakKeyDictionary[TcpConnection, int] = weakref.WeakKeyDictionary()
        self.server_agent: str | None = None
        self.fallback_reason: str | None = None
        self.control = TcpTransport(host, port, namespace, key, pool_size, timeout, connect_timeout)
        super().__init__(self.control)
        self.limits: Limits = self.control.limits
        self.shard_group = self.control.shard_group
        try:
            self._start_nixl(register_cache, bounce_cache)
        except MemkvError as exc:
            self._stop_nixl()
            reason = exc.message
            if self.mode == "nixl":
                self.close()
                raise Unsupported(f"memkv+nixl with transport=nixl: the NIXL data path is unavailable: {reason}. "
                                  "Use transport=auto to fall back to TCP.") from None
            self.fallback_reason = reason
            warnings.warn(f"memkv+nixl: NIXL data path unavailable ({reason}); block payloads go over TCP",
                          RuntimeWarning, stacklevel=3)

    # ---- set-up ------------------------------------------------------------------------------
    @property
    def nixl_active(self) -> bool:
        return self._memory is not None

    @property
    def agent(self) -> NixlAgent:
        """This process's NIXL agent; Unsupported while the payloads go over TCP."""
        if self._agent is None:
            raise Unsupported(f"memkv+nixl runs without NIXL here: {self.fallback_reason or 'closed'}")
        return self._agent

    def _start_nixl(self, register_cache: int, bounce_cache: int) -> None:
        self._agent = NixlAgent(self.agent_name)
        self._pump = Pump(self._agent)
        memory = _Memory(self._agent, register_cache, bounce_cache)
        probe = aligned_buffer(4096)
        probe_address = address_of(probe)
        memory.register(probe_address, len(probe), 0, MemoryKind.DRAM)
        conn = self.control.connection()
        epoch, blob = memory.metadata()
        self._pump.enter()
        try:
            _, reader, _ = self.control.wait(conn.request(
                Opcode.NIXL_HELLO, rec.NixlHelloArgs(self.agent_name, epoch, probe_address, PROBE_BYTES),
                msg.pack_blob(blob), 1))
        except ProtocolError as exc:
            raise Unsupported(f"the server does not speak NIXL_HELLO ({exc.message})") from None
        finally:
            self._pump.leave()
            memory.deregister(probe_address, len(probe), 0, MemoryKind.DRAM)
        expected = reader.arg("probe", str, "")
        if expected != bytes(probe[:PROBE_BYTES]).hex():
            raise Unsupported("the NIXL probe transfer did not arrive (UCX cannot reach this client from the "
                              "server; check UCX_TLS and UCX_NET_DEVICES)")
        self.server_agent = reader.arg("agent", str)
        self.server_put_path = reader.arg("put_path", str, "read")
        self.server_staging = reader.arg("staging_bytes", int, 0)
        self.server_chunk = reader.arg("chunk", int, 1)
        with self._hello_lock:
            self._sent_epoch[conn] = epoch
        self._memory = memory

    def _stop_nixl(self) -> None:
        memory, self._memory = self._memory, None
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.close()
        if memory is not None:
            memory.close()
        self._agent = None

    def register(self, buffer: BufferLike | object) -> None:
        """Register memory (an engine's KV pool) once; buffers inside it then move without copies."""
        if self._memory is not None:
            self._memory.register(*_region_of(buffer))

    def deregister(self, buffer: BufferLike | object) -> None:
        if self._memory is not None:
            self._memory.deregister(*_region_of(buffer))

    def _hello_if_needed(self, conn: TcpConnection) -> concurrent.futures.Future[Reply] | None:
        """Send this agent's metadata on `conn` unless it already carries every registration.

        Runs under a lock so that no request can overtake the NIXL_HELLO it depends on.
        """
        assert self._memory is not None
        with self._hello_lock:
            epoch = self._memory.epoch
            if self._sent_epoch.get(conn, -1) >= epoch:
                return None
            epoch, blob = self._memory.metadata()
            future = conn.request(Opcode.NIXL_HELLO, rec.NixlHelloArgs(self.agent_name, epoch), msg.pack_blob(blob), 1)
            self._sent_epoch[conn] = epoch
            return future

    def _nixl_request(self, opcode: Opcode, records: list[bytes], pump_needed: bool = True,
                      conn: TcpConnection | None = None) -> concurrent.futures.Future[Reply]:
        """Send a NIXL request (after NIXL_HELLO where needed), on `conn` or any pooled connection; the
        pump runs until it is answered when the server may move bytes into or out of this process
        meanwhile (NIXL_PUT, NIXL_GET)."""
        if not pump_needed:
            return self._send_nixl(opcode, records, conn)
        pump = self._pump
        assert pump is not None
        pump.enter()
        try:
            future = self._send_nixl(opcode, records)
        except BaseException:
            pump.leave()
            raise
        future.add_done_callback(lambda _: pump.leave())
        return future

    def _send_nixl(self, opcode: Opcode, records: list[bytes], conn: TcpConnection | None = None
                   ) -> concurrent.futures.Future[Reply]:
        conn = conn if conn is not None else self.control.connection()
        hello = self._hello_if_needed(conn)
        future = conn.request(opcode, rec.AgentArgs(self.agent_name), b"".join(records), len(records))
        if hello is None:
            return future
        out: concurrent.futures.Future[Reply] = concurrent.futures.Future()

        def done(_: concurrent.futures.Future[Reply]) -> None:
            if not (hello.done() and future.done()):
                return
            if out.done():
                return
            error = hello.exception() or future.exception()
            try:
                if error is not None:
                    out.set_exception(error)
                else:
                    out.set_result(future.result())
            except concurrent.futures.InvalidStateError:
                pass

        hello.add_done_callback(done)
        future.add_done_callback(done)
        return out

    # ---- memory of one item ----------------------------------------------------------------------
    def _slot(self, buffer: BufferLike | object, writable: bool) -> _Slot:
        memory = self._memory
        assert memory is not None
        try:
            address, length, device_id, kind, owner = describe_memory(buffer)
        except LookupError:
            view = writable_view(buffer) if writable else readable_view(buffer)  # type: ignore[arg-type]
            if len(view) == 0:
                return _Slot()
            address = address_of(view)
            if memory.covered(address, len(view)):
                unpin = memory.pin(address, len(view), 0, MemoryKind.DRAM, None)
                return _Slot(address, len(view), 0, MemoryKind.DRAM, view, None, unpin)
            copy, copy_address, give_back = memory.bounce(len(view))
            return _Slot(copy_address, len(view), 0, MemoryKind.DRAM, copy[: len(view)], view, give_back)
        if length == 0:
            return _Slot()
        host: memoryview | None = None
        if kind == MemoryKind.DRAM:
            host = MemoryRegion(address, length).view()
            if writable and _read_only(owner):
                raise InvalidArgument("destination buffer is read-only")
        return _Slot(address, length, device_id, kind, host, None, memory.pin(address, length, device_id, kind, owner))

    @staticmethod
    def _host_buffer(buffer: BufferLike | object) -> BufferLike:
        """The TCP fallback's view of a torch CPU tensor (other buffers pass as they are)."""
        tensor = _torch_tensor(buffer)
        if tensor is not None and not tensor.is_cuda:
            return MemoryRegion(int(tensor.data_ptr()), int(tensor.numel() * tensor.element_size()))
        return buffer  # type: ignore[return-value]

    # ---- blocks ----------------------------------------------------------------------------------
    def _nixl_batch(self, opcode: Opcode, count: int, prepare: Callable[[int], tuple[bytes, _Slot]],
                    refused: Callable[[MemkvError], R],
                    answers: Callable[[msg.MetaReader, list[int], list[_Slot]], list[R]]
                    ) -> concurrent.futures.Future[list[R]]:
        """Send one NIXL batch: `prepare(i)` gives item i's descriptor record and slot, or raises the
        item's error (kept as `refused(error)`); `answers` reads the server's per-item results.
        Slots are released once the answer is in, whatever it was."""
        results: list[R | None] = [None] * count
        slots: list[_Slot] = []
        sent: list[int] = []
        records: list[bytes] = []

        def collect() -> list[R]:
            return [r if r is not None else refused(Internal("no result")) for r in results]

        try:
            for i in range(count):
                try:
                    record, slot = prepare(i)
                except MemkvError as exc:
                    results[i] = refused(exc)
                    continue
                records.append(record)
                slots.append(slot)
                sent.append(i)
            if not records:
                return _done(collect())
            future = self._nixl_request(opcode, records)
        except BaseException:
            _release(slots)
            raise

        def combine(reply: Reply) -> list[R]:
            _, reader, _ = reply
            got = answers(reader, sent, slots)
            reader.finish()
            if len(got) != len(sent):
                raise ProtocolError(f"{opcode.name} answer has a different number of items than the request")
            for i, answer in zip(sent, got, strict=True):
                results[i] = answer
            return collect()

        return _then(future, combine, lambda: _release(slots))

    def _put_slot(self, item: PutItem) -> tuple[bytes, _Slot, int, bytes]:
        """(key, slot holding the payload, its XXH3-64 checksum, encoded meta) of one put item."""
        key = check_key(item.key)
        self.limits.check_payload_size(_length_of(item.payload))
        slot = self._slot(item.payload, writable=False)
        try:
            item.meta.validate(self.limits)
            checksum = item.checksum
            if checksum is None:
                if slot.kind != MemoryKind.DRAM:
                    raise InvalidArgument("a put from device memory needs the payload's XXH3-64 checksum "
                                          "(PutItem.checksum)")
                checksum = payload_checksum(slot.user if slot.user is not None else slot.host or b"")
            if slot.user is not None and slot.host is not None:
                slot.host[:] = slot.user
        except MemkvError:
            slot.done()
            raise
        return key, slot, checksum, item.meta.encode()

    def _put_slots(self, items: Sequence[PutItem], results: list[ItemResult | None]
                   ) -> list[tuple[int, bytes, _Slot, int, bytes]]:
        """(index, key, slot, checksum, meta) of each item that can be sent; the others' errors go
        into `results`."""
        prepared = []
        for i, item in enumerate(items):
            try:
                prepared.append((i, *self._put_slot(item)))
            except MemkvError as exc:
                results[i] = ItemResult(exc.code, exc.message)
        return prepared

    def chosen_put_path(self) -> str:
        """read (the server READs, NIXL_PUT) or write (client WRITEs into standing credits, NIXL_STORE)."""
        return self.server_put_path if self.put_path == "auto" else self.put_path

    def put_async(self, items: Sequence[PutItem]) -> concurrent.futures.Future[list[ItemResult]]:
        if self._memory is None:
            return self.control.put_async([dataclasses.replace(i, payload=self._host_buffer(i.payload))
                                           for i in items])
        items = list(items)
        self.limits.check_batch(len(items))
        if self.chosen_put_path() == "write":
            if TcpTransport.speaks(self.control.connection(), Opcode.NIXL_CREDIT):
                return _done(CreditPut(self, self._credits, items).run())
            return _done(ClientDrivenPut(self, items).run())  # a 1.1 server has no credits (MKV-WIRE-045)

        def prepare(i: int) -> tuple[bytes, _Slot]:
            key, slot, checksum, meta = self._put_slot(items[i])
            return msg.pack_nixl_put_item(key, slot.address, slot.length, slot.device_id, slot.kind, checksum,
                                          meta), slot

        return self._nixl_batch(Opcode.NIXL_PUT, len(items), prepare, lambda exc: ItemResult(exc.code, exc.message),
                                lambda reader, sent, slots: reader.results())

    # ---- client-driven put (spec/wire.md section 8.1) ----------------------------------------------
    def load_server_agent(self) -> str:
        """Load the server agent's metadata into this agent once (a WRITE initiator needs it)."""
        with self._hello_lock:
            if self._server_loaded:
                assert self.server_agent is not None
                return self.server_agent
        _, reader, _ = self.control.wait(self._nixl_request(Opcode.NIXL_SERVER_AGENT, [], pump_needed=False))
        name = reader.arg("agent", str)
        if reader.count != 1:
            raise ProtocolError("NIXL_SERVER_AGENT answers exactly one metadata item")
        blob = msg.read_blob(reader)
        reader.finish()
        if name != self.server_agent or metadata_agent_name(blob) != name:
            raise ProtocolError("NIXL_SERVER_AGENT answered metadata of another agent than the server's")
        with self._hello_lock:
            if not self._server_loaded:
                self.agent.add_peer(blob)
                self._server_loaded = True
        return str(name)

    def get_into_async(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]
                       ) -> concurrent.futures.Future[list[GetResult]]:
        if self._memory is None:
            return self.control.get_into_async(keys, [self._host_buffer(b) for b in buffers])
        keys, buffers = list(keys), list(buffers)
        self.limits.check_batch(len(keys))
        if len(keys) != len(buffers):
            raise InvalidArgument(f"{len(keys)} keys but {len(buffers)} buffers")

        def prepare(i: int) -> tuple[bytes, _Slot]:
            checked = check_key(keys[i])
            slot = self._slot(buffers[i], writable=True)
            return msg.pack_nixl_desc(checked, slot.address, slot.length, slot.device_id, slot.kind), slot

        def answers(reader: msg.MetaReader, sent: list[int], slots: list[_Slot]) -> list[GetResult]:
            got = reader.get_results(Limits(max_user_meta=msg.MAX_BLOCK_META))
            if len(got) != len(sent):
                raise ProtocolError("NIXL_GET answer has a different number of items than the request")
            return [_arrived(slot, answer) for slot, answer in zip(slots, got, strict=True)]

        return self._nixl_batch(Opcode.NIXL_GET, len(keys), prepare, lambda exc: GetResult(exc.code, exc.message),
                                answers)

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        return self.control.wait(self.put_async(items))

    def get_into(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        return self.control.wait(self.get_into_async(keys, buffers))

    # ---- target ----------------------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        caps = self.control.capabilities()
        return dataclasses.replace(caps, backend="nixl") if self.nixl_active else caps

    # ---- parts of a cluster session: over the control connection (transport_features.SpansSessions)
    def open_part(self, session_id: str, ttl_s: float, keys: Sequence[bytes], fingerprint: bytes,
                  foreign: bool) -> SessionInfo:
        return self.control.open_part(session_id, ttl_s, keys, fingerprint, foreign)

    def append_part(self, session_id: str, keys: Sequence[bytes], foreign: bool) -> SessionInfo:
        return self.control.append_part(session_id, keys, foreign)

    def resume_part(self, session_id: str, prefix_len: int) -> SessionInfo:
        return self.control.resume_part(session_id, prefix_len)

    def fork_part(self, session_id: str, new_session_id: str, prefix_len: int | None,
                  ttl_s: float | None) -> SessionInfo:
        return self.control.fork_part(session_id, new_session_id, prefix_len, ttl_s)

    def ping(self) -> float:
        return self.control.ping()

    def children(self, parents: Sequence[bytes], after: bytes | None = None) -> ChildPage:
        return self.control.children(parents, after)  # a control-plane read (MKV-WIRE-044)

    def _close(self) -> None:
        self.control.close()
        self._stop_nixl()


def _length_of(buffer: BufferLike | object) -> int:
    try:
        return describe_memory(buffer)[1]
    except LookupError:
        return len(readable_view(buffer))  # type: ignore[arg-type]


def _region_of(buffer: BufferLike | object) -> tuple[int, int, int, MemoryKind]:
    """(address, length, device id, memory kind) of a tensor, array, descriptor or plain buffer."""
    try:
        address, length, device_id, kind, _ = describe_memory(buffer)
    except LookupError:
        view = readable_view(buffer)  # type: ignore[arg-type]
        return address_of(view), len(view), 0, MemoryKind.DRAM
    return address, length, device_id, kind


def _arrived(slot: _Slot, answer: GetResult) -> GetResult:
    """A get answer once its bytes are in the slot: verified, and copied to the caller's buffer
    when they went through a bounce buffer (MKV-WIRE-021)."""
    if not answer.ok:
        return answer
    if answer.length > slot.length:
        raise ProtocolError("server reports more bytes than the buffer holds")
    if slot.host is not None:
        arrived = slot.host[: answer.length]
        if payload_checksum(arrived) != answer.checksum:
            return GetResult(ErrorCode.CORRUPTED, "payload failed checksum verification after transfer")
        if slot.user is not None:
            slot.user[: answer.length] = arrived
    return answer


def _release(slots: Sequence[_Slot]) -> None:
    for slot in slots:
        slot.done()


def _done(value: T) -> concurrent.futures.Future[T]:
    future: concurrent.futures.Future[T] = concurrent.futures.Future()
    future.set_result(value)
    return future


def _then(future: concurrent.futures.Future[Reply], combine: Callable[[Reply], T],
          cleanup: Callable[[], None]) -> concurrent.futures.Future[T]:
    """A future of combine(reply); cleanup runs once the answer is in, whatever it was."""
    out: concurrent.futures.Future[T] = concurrent.futures.Future()

    def done(f: concurrent.futures.Future[Reply]) -> None:
        try:
            out.set_result(combine(f.result()))
        except BaseException as exc:
            out.set_exception(exc)
        finally:
            cleanup()

    future.add_done_callback(done)
    return out


def open_nixl(url_host: str, url_port: int | None, namespace: str, options: dict[str, Any]) -> NixlTransport:
    key = pop_credential(options)
    if "transport" not in options:
        options["transport"] = os.environ.get("MEMKV_TRANSPORT") or "auto"
    for name in ("register_cache", "bounce_cache"):
        if name in options and isinstance(options[name], str):
            options[name] = parse_size(options[name])
    check_options("memkv+nixl", options, {"pool_size", "timeout", "connect_timeout", "transport", "register_cache",
                                          "bounce_cache", "put_path"})
    return NixlTransport(url_host or "127.0.0.1", url_port or DEFAULT_PORT, namespace, key, **options)


__all__ = ["MODES", "PUT_PATHS", "NixlTransport", "describe_memory", "open_nixl"]
