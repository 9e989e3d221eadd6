"""Frame metadata: a JSON argument object plus a table of binary items (spec/wire.md "Metadata").

Layout: u32 args_len | args (UTF-8 JSON object) | u32 item_count | items. Items are fixed
binary records per opcode (keys, put descriptors with checksums, per-item results). Pure.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from typing import Any, NoReturn

from .. import bounded_json
from ..addresses import split_address
from ..blocks import BlockMeta, Limits
from ..errors import ErrorCode, InvalidArgument, LimitExceeded, MemkvError, ProtocolError
from ..keys import KEY_SIZE
from ..transport import BlockInfo, Capabilities, GetResult, ItemResult

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_PUT_ITEM = struct.Struct("<16sQQH")      # key, length, checksum, meta_len (+ meta)
_GET_ITEM = struct.Struct("<16sQ")        # key, capacity of the reader's buffer
_RESULT = struct.Struct("<HH")            # status, message length (+ message)
_GET_RESULT = struct.Struct("<HQQH")      # status, length, checksum, meta_len (+ meta, u16 msg_len, msg)
_STAT_RESULT = struct.Struct("<BQQH")     # present, length, checksum, meta_len (+ meta)
MAX_MESSAGE = 1024
MAX_BLOCK_META = 4096


def _json_refuse(reason: str) -> NoReturn:
    raise ProtocolError(f"frame metadata: {reason}")


# One decoder for every frame (json.loads with an option builds a new one per call).
_JSON_DECODER = bounded_json.decoder(_json_refuse)
_EMPTY_ARGS = b"{}"
_EMPTY_ARGS_PREFIX = _U32.pack(len(_EMPTY_ARGS)) + _EMPTY_ARGS


def encode_meta(args: dict[str, Any] | None = None, items: bytes = b"", count: int = 0) -> bytes:
    if not args:  # the data path's common case: no arguments, only items
        return _EMPTY_ARGS_PREFIX + _U32.pack(count) + items
    raw_args = json.dumps(args, separators=(",", ":"), sort_keys=True, allow_nan=False).encode("utf-8")
    return _U32.pack(len(raw_args)) + raw_args + _U32.pack(count) + items


class MetaReader:
    """Cursor over decoded metadata; every read is bounds-checked (truncation is PROTOCOL_ERROR)."""

    def __init__(self, raw: bytes | bytearray | memoryview, max_items: int) -> None:
        self.raw = memoryview(raw).cast("B") if not isinstance(raw, memoryview) else raw
        self.pos = 0
        args_len = self._unpack(_U32)[0]
        raw_args = self._take(args_len)
        try:
            args = {} if raw_args == _EMPTY_ARGS else _JSON_DECODER.decode(bytes(raw_args).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            raise ProtocolError(f"frame arguments are not valid JSON: {exc}") from None
        if not isinstance(args, dict):
            raise ProtocolError("frame arguments must be a JSON object")
        self.args: dict[str, Any] = args
        self.count = self._unpack(_U32)[0]
        if self.count > max_items:
            raise LimitExceeded(f"batch of {self.count} items exceeds the maximum {max_items}")

    def _take(self, size: int) -> memoryview:
        end = self.pos + size
        if end > len(self.raw):
            raise ProtocolError("frame metadata is truncated")
        piece = self.raw[self.pos : end]
        self.pos = end
        return piece

    def _unpack(self, fmt: struct.Struct) -> tuple[Any, ...]:
        return fmt.unpack(self._take(fmt.size))

    def finish(self) -> None:
        if self.pos != len(self.raw):
            raise ProtocolError(f"{len(self.raw) - self.pos} unexpected bytes after the frame items")

    # ---- argument accessors ---------------------------------------------------------------
    def arg(self, name: str, kind: type | tuple[type, ...], default: Any = ..., nullable: bool = False) -> Any:
        if name not in self.args:
            if default is ...:
                raise InvalidArgument(f"argument {name!r} is missing")
            return default
        value = self.args[name]
        if value is None and nullable:
            return None
        int_as_float = kind is float and isinstance(value, int)
        if (isinstance(value, bool) and kind is not bool) or not (isinstance(value, kind) or int_as_float):
            raise InvalidArgument(f"argument {name!r} has the wrong type")
        return value

    def hex_arg(self, name: str, size: int, default: Any = ..., nullable: bool = False) -> Any:
        value = self.arg(name, str, default, nullable=nullable)
        if (value is default and default is not ...) or value is None:
            return value
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise InvalidArgument(f"argument {name!r} is not hex") from None
        if len(raw) != size:
            raise InvalidArgument(f"argument {name!r} must be {size} bytes")
        return raw

    # ---- item tables --------------------------------------------------------------------------
    def keys(self) -> list[bytes]:
        return [bytes(self._take(KEY_SIZE)) for _ in range(self.count)]

    def _block_meta(self, meta_len: int, limits: Limits) -> BlockMeta:
        if meta_len > MAX_BLOCK_META:
            raise LimitExceeded(f"block metadata of {meta_len} bytes exceeds {MAX_BLOCK_META}")
        return BlockMeta.decode(bytes(self._take(meta_len)), limits)

    def _message(self, size: int) -> str:
        return bytes(self._take(size)).decode("utf-8", "replace")

    def put_items(self, limits: Limits) -> list[tuple[bytes, int, int, BlockMeta | MemkvError]]:
        """(key, length, checksum, meta or the error decoding it) per item."""
        return [self.put_item(limits) for _ in range(self.count)]

    def put_item(self, limits: Limits) -> tuple[bytes, int, int, BlockMeta | MemkvError]:
        """One PUT item record (also the tail of a NIXL_STORE item)."""
        key, length, checksum, meta_len = self._unpack(_PUT_ITEM)
        if meta_len > MAX_BLOCK_META:
            raise LimitExceeded(f"block metadata of {meta_len} bytes exceeds {MAX_BLOCK_META}")
        raw_meta = bytes(self._take(meta_len))
        meta: BlockMeta | MemkvError
        try:
            meta = BlockMeta.decode(raw_meta, limits)
        except MemkvError as exc:
            meta = exc
        return bytes(key), length, checksum, meta

    def get_items(self) -> list[tuple[bytes, int]]:
        return [(bytes(k), cap) for k, cap in (self._unpack(_GET_ITEM) for _ in range(self.count))]

    def results(self) -> list[ItemResult]:
        out = []
        for _ in range(self.count):
            status, msg_len = self._unpack(_RESULT)
            out.append(ItemResult(_code(status), self._message(msg_len)))
        return out

    def get_results(self, limits: Limits) -> list[GetResult]:
        out = []
        for _ in range(self.count):
            status, length, checksum, meta_len = self._unpack(_GET_RESULT)
            meta = self._block_meta(meta_len, limits) if meta_len else None
            (msg_len,) = self._unpack(_U16)
            message = self._message(msg_len)
            out.append(GetResult(_code(status), message, length, checksum, meta))
        return out

    def stat_results(self, keys: Sequence[bytes], limits: Limits) -> list[BlockInfo | None]:
        if len(keys) != self.count:
            raise ProtocolError("stat response has a different number of items than the request")
        out: list[BlockInfo | None] = []
        for key in keys:
            present, length, checksum, meta_len = self._unpack(_STAT_RESULT)
            if not present:
                self._take(meta_len)
                out.append(None)
                continue
            out.append(BlockInfo(key, length, checksum, self._block_meta(meta_len, limits)))
        return out

    def flags(self) -> list[bool]:
        return [bool(self._unpack(_U8)[0]) for _ in range(self.count)]


def _code(status: int) -> ErrorCode:
    """A status this build does not know is INTERNAL (MKV-WIRE-043, MKV-ERR-001)."""
    try:
        return ErrorCode(status)
    except ValueError:
        return ErrorCode.INTERNAL


def _text(message: str) -> bytes:
    return message.encode("utf-8")[:MAX_MESSAGE]


# ---- item encoders ----------------------------------------------------------------------------

def pack_keys(keys: Sequence[bytes]) -> bytes:
    for key in keys:
        if len(key) != KEY_SIZE:
            raise ProtocolError("keys on the wire are exactly 16 bytes")
    return b"".join(bytes(k) for k in keys)


def pack_put_item(key: bytes, length: int, checksum: int, meta: bytes) -> bytes:
    return _PUT_ITEM.pack(key, length, checksum, len(meta)) + meta


def pack_get_item(key: bytes, capacity: int) -> bytes:
    return _GET_ITEM.pack(key, capacity)


def pack_results(results: Sequence[ItemResult]) -> bytes:
    out = []
    for result in results:
        msg = _text(result.message)
        out.append(_RESULT.pack(int(result.status), len(msg)) + msg)
    return b"".join(out)


def pack_get_results(results: Sequence[GetResult]) -> bytes:
    out = []
    for result in results:
        meta = result.meta.encode() if result.meta is not None and result.ok else b""
        msg = _text(result.message)
        length = result.length if result.ok else 0
        checksum = result.checksum if result.ok else 0
        out.append(_GET_RESULT.pack(int(result.status), length, checksum, len(meta)) + meta
                   + _U16.pack(len(msg)) + msg)
    return b"".join(out)


def pack_stat_results(infos: Sequence[BlockInfo | None]) -> bytes:
    out = []
    for info in infos:
        if info is None:
            out.append(_STAT_RESULT.pack(0, 0, 0, 0))
        else:
            meta = info.meta.encode()
            out.append(_STAT_RESULT.pack(1, info.length, info.checksum, len(meta)) + meta)
    return b"".join(out)


def pack_flags(flags: Sequence[bool]) -> bytes:
    return b"".join(_U8.pack(1 if f else 0) for f in flags)


# ---- structured arguments ---------------------------------------------------------------------

def capabilities_from(args: dict[str, Any]) -> Capabilities:
    try:
        limits = Limits(**{k: int(v) for k, v in args["limits"].items() if k in Limits.__dataclass_fields__})
        capacity = args.get("capacity_bytes")
        window = args.get("flush_window_s")
        return Capabilities(str(args["backend"]), frozenset(str(p) for p in args["profiles"]), limits,
                            str(args["spec_version"]), None if capacity is None else int(capacity),
                            None if window is None else float(window), check_shard_group(args.get("shard_group", [])))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProtocolError(f"malformed capabilities: {exc}") from None


MAX_SHARD_GROUP = 256
MAX_SHARD_ADDRESS = 300


def check_shard_group(value: Any) -> tuple[str, ...]:
    """`shard_group` of a CAPABILITIES answer (MKV-CLU-060), bounded before it is used (ValueError)."""
    if not isinstance(value, list) or len(value) > MAX_SHARD_GROUP:
        raise ValueError(f"shard_group must be a list of at most {MAX_SHARD_GROUP} addresses")
    if not all(isinstance(a, str) and 0 < len(a) <= MAX_SHARD_ADDRESS for a in value):
        raise ValueError(f"shard_group names an address that is not a string of 1..{MAX_SHARD_ADDRESS} characters")
    for address in value:
        try:
            split_address(address)
        except InvalidArgument as exc:
            raise ValueError(f"shard_group: {exc.message}") from None
    return tuple(value)


def error_args(code: ErrorCode, message: str) -> dict[str, Any]:
    return {"code": int(code), "name": code.name, "message": message[:MAX_MESSAGE]}


def finite(value: float) -> bool:
    return math.isfinite(value)


# ---- NIXL data path (spec/wire.md section 8) ---------------------------------------------------
# A descriptor names memory the client registered with its NIXL agent: the server moves a block's
# bytes to (NIXL_GET) or from (NIXL_PUT) exactly this region, never beyond `length`.
_NIXL_DESC = struct.Struct("<16sQQIB")    # key, address, length (capacity for get), device id, memkv.memory_kind
_NIXL_PUT_TAIL = struct.Struct("<QH")     # checksum, meta_len (+ meta)
MAX_NIXL_METADATA = 1024 * 1024           # bytes of NIXL agent metadata in one NIXL_HELLO


def pack_nixl_desc(key: bytes, address: int, length: int, device_id: int, mem_kind: int) -> bytes:
    return _NIXL_DESC.pack(key, address, length, device_id, mem_kind)


def pack_nixl_put_item(key: bytes, address: int, length: int, device_id: int, mem_kind: int, checksum: int,
                       meta: bytes) -> bytes:
    return (_NIXL_DESC.pack(key, address, length, device_id, mem_kind)
            + _NIXL_PUT_TAIL.pack(checksum, len(meta)) + meta)


def nixl_descs(reader: MetaReader, with_put: bool, limits: Limits
               ) -> list[tuple[bytes, int, int, int, int, int, BlockMeta | MemkvError]]:
    """(key, address, length, device id, memory kind, checksum, meta or its decode error) per item."""
    out: list[tuple[bytes, int, int, int, int, int, BlockMeta | MemkvError]] = []
    for _ in range(reader.count):
        key, address, length, device_id, mem_kind = reader._unpack(_NIXL_DESC)
        checksum = 0
        meta: BlockMeta | MemkvError = BlockMeta()
        if with_put:
            checksum, meta_len = reader._unpack(_NIXL_PUT_TAIL)
            if meta_len > MAX_BLOCK_META:
                raise LimitExceeded(f"block metadata of {meta_len} bytes exceeds {MAX_BLOCK_META}")
            raw_meta = bytes(reader._take(meta_len))
            try:
                meta = BlockMeta.decode(raw_meta, limits)
            except MemkvError as exc:
                meta = exc
        out.append((bytes(key), address, length, device_id, mem_kind, checksum, meta))
    return out


def pack_blob(blob: bytes) -> bytes:
    return _U32.pack(len(blob)) + blob


def read_blob(reader: MetaReader, max_size: int = MAX_NIXL_METADATA) -> bytes:
    (size,) = reader._unpack(_U32)
    if size > max_size:
        raise LimitExceeded(f"a blob of {size} bytes exceeds the limit {max_size}")
    return bytes(reader._take(size))
