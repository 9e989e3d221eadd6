"""Records of the client-driven NIXL put (spec/wire.md section 8.1): grants and commit items.

NIXL_ALLOC items are PUT items (key, length, checksum, meta; `messages.pack_put_item`); its
answer is, per item, an item result followed, when OK, by a grant. NIXL_COMMIT items are a
lease id and an action.
"""

from __future__ import annotations

import dataclasses
import struct

from ..errors import ErrorCode, ProtocolError
from ..transport import ItemResult
from . import messages as msg

_GRANT = struct.Struct("<QQIBII")  # lease id, staging address, device id, memory kind, lease time ms, piece
_COMMIT = struct.Struct("<QB")     # lease id, action
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


def pack_commit_item(lease: int, action: int) -> bytes:
    return _COMMIT.pack(lease, action)


def read_commit_items(reader: msg.MetaReader) -> list[tuple[int, int]]:
    return [reader._unpack(_COMMIT) for _ in range(reader.count)]  # type: ignore[misc]


__all__ = ["DISCARD", "STORE", "Grant", "notification", "pack_alloc_answer", "pack_commit_item", "read_alloc_answer",
           "read_commit_items"]
