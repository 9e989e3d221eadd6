"""Records of the client-driven NIXL put (spec/wire.md section 8.1): grants, commit, credit and
store items.

NIXL_ALLOC items are PUT items (key, length, checksum, meta; `messages.pack_put_item`); its
answer is, per item, an item result followed, when OK, by a grant. NIXL_COMMIT items are a
lease id and an action. NIXL_CREDIT items are a size and its answer is NIXL_ALLOC's; NIXL_STORE
items are a credit id and a use, then a PUT item.
"""

from __future__ import annotations

import dataclasses
import struct

from ..blocks import BlockMeta, Limits
from ..errors import ErrorCode, MemkvError, ProtocolError
from ..transport import ItemResult
from . import messages as msg

_GRANT = struct.Struct("<QQIBII")  # lease id, staging address, device id, memory kind, lease time ms, piece
_COMMIT = struct.Struct("<QB")     # lease id, action
_CREDIT = struct.Struct("<Q")      # size
_STORE = struct.Struct("<QI")      # credit id, use (then a PUT item)
STORE, DISCARD = 1, 0


def notification(lease: int, piece: int) -> bytes:
    """What the WRITE of piece `piece` of lease `lease` carries to the server."""
    return b"memkv-lease:%d:%d" % (lease, piece)


@dataclasses.dataclass(frozen=True, slots=True)
class Grant:
    lease: int
    address: int
    device_id: int
    mem_kind: int
    lease_ms: int
    piece: int  # bytes per WRITE; WRITE k carries the notification memkv-lease:<lease>:<k>


def pack_alloc_answer(results: list[ItemResult], grants: list[Grant | None]) -> bytes:
    out = []
    for result, grant in zip(results, grants, strict=True):
        out.append(msg.pack_results([result]))
        if result.ok:
            assert grant is not None
            out.append(_GRANT.pack(*dataclasses.astuple(grant)))
    return b"".join(out)


def read_alloc_answer(reader: msg.MetaReader) -> list[tuple[ItemResult, Grant | None]]:
    out: list[tuple[ItemResult, Grant | None]] = []
    for _ in range(reader.count):
        status, msg_len = reader._unpack(msg._RESULT)
        result = ItemResult(msg._code(status), reader._message(msg_len))
        grant = Grant(*reader._unpack(_GRANT)) if result.status is ErrorCode.OK else None
        if grant is not None and (grant.lease == 0 or grant.piece == 0):
            raise ProtocolError("a NIXL_ALLOC grant has lease id 0 or piece size 0")
        out.append((result, grant))
    return out


def read_notifications(notifs: dict[str, list[bytes]], prefix: bytes, fields: int) -> list[tuple[str, list[int]]]:
    """(peer, numbers) of each notification `<prefix><n1>:<n2>...` with `fields` decimal numbers;
    any other notification is skipped."""
    out = []
    for peer, messages in notifs.items():
        for message in messages:
            if not message.startswith(prefix):
                continue
            parts = message[len(prefix):].split(b":")
            if len(parts) == fields and all(part.isdigit() for part in parts):
                out.append((peer, [int(part) for part in parts]))
    return out


def credit_notification(credit: int, use: int, piece: int) -> bytes:
    """What the WRITE of piece `piece` of use `use` of credit `credit` carries (MKV-WIRE-037)."""
    return b"memkv-credit:%d:%d:%d" % (credit, use, piece)


def pack_credit_item(size: int) -> bytes:
    return _CREDIT.pack(size)


def read_credit_items(reader: msg.MetaReader) -> list[int]:
    return [reader._unpack(_CREDIT)[0] for _ in range(reader.count)]


def pack_store_item(credit: int, use: int, key: bytes, length: int, checksum: int, meta: bytes) -> bytes:
    return _STORE.pack(credit, use) + msg.pack_put_item(key, length, checksum, meta)


StoreItem = tuple[int, int, bytes, int, int, BlockMeta | MemkvError]


def read_store_items(reader: msg.MetaReader, limits: Limits) -> list[StoreItem]:
    """(credit id, use, key, length, checksum, meta or the error decoding it) per item."""
    return [(*reader._unpack(_STORE), *reader.put_item(limits)) for _ in range(reader.count)]


def pack_commit_item(lease: int, action: int) -> bytes:
    return _COMMIT.pack(lease, action)


def read_commit_items(reader: msg.MetaReader) -> list[tuple[int, int]]:
    return [reader._unpack(_COMMIT) for _ in range(reader.count)]  # type: ignore[misc]


__all__ = ["DISCARD", "STORE", "Grant", "StoreItem", "credit_notification", "notification", "pack_alloc_answer",
           "pack_commit_item", "pack_credit_item", "pack_store_item", "read_alloc_answer", "read_commit_items",
           "read_credit_items", "read_notifications", "read_store_items"]
