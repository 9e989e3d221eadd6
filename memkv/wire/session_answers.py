"""What a connection's settled minor version allows of sessions: answers' size, the arguments of 1.2.

From minor 2 a session answer carries the whole chain, bounded by the metadata it arrived in
(MKV-WIRE-050); a peer of minor 0 or 1 bounds every answer by `max_items`, so a server refuses
an operation whose answer would not fit before applying it (MKV-WIRE-051).
"""

from __future__ import annotations

from ..keys import KEY_SIZE
from .frames import DEFAULT_MAX_META
from .opcodes import Opcode

SESSIONS_1_2_MINOR = 2
SESSION_ANSWERS = frozenset({Opcode.SESSION_OPEN, Opcode.SESSION_APPEND, Opcode.SESSION_SUSPEND,
                             Opcode.SESSION_RESUME, Opcode.SESSION_FORK, Opcode.SESSION_CLOSE,
                             Opcode.SESSION_INFO})
#: room left in an answer's metadata for a session answer's arguments
ARGS_ROOM = 64 * 1024
#: the longest chain a session answer can carry (MKV-WIRE-050): a target declares no more
MAX_SESSION_BLOCKS_ON_THE_WIRE = (DEFAULT_MAX_META - ARGS_ROOM) // KEY_SIZE


def whole_chain(minor: int) -> bool:
    """Whether session answers on a connection of `minor` carry the whole chain."""
    return minor >= SESSIONS_1_2_MINOR


def takes_session_parts(minor: int) -> bool:
    """Whether the arguments of MKV-WIRE-052..054 (client ids, foreign keys, a stated prefix) may be sent."""
    return minor >= SESSIONS_1_2_MINOR


def answer_item_bound(opcode: Opcode, minor: int, max_items: int, meta_len: int) -> int:
    """The most items a client accepts in an answer of `opcode` whose metadata is `meta_len` bytes."""
    if opcode in SESSION_ANSWERS and whole_chain(minor):
        return meta_len // KEY_SIZE  # the keys are already received: nothing more is allocated for them
    return max_items
