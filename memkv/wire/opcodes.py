"""The closed list of wire opcodes and the role each one needs (spec/wire.md, MKV-WIRE-004, MKV-NS-006).

Pure: no I/O. Numbers never change; a new operation gets a new number.
"""

from __future__ import annotations

import enum


class Opcode(enum.IntEnum):
    HELLO = 0x01
    PUT = 0x02
    GET = 0x03
    STAT = 0x04
    EXISTS = 0x05
    LOOKUP = 0x06
    RELEASE_LEASE = 0x07
    DELETE = 0x08
    CHILDREN = 0x09  # since 1.2 (MKV-WIRE-044)
    SESSION_OPEN = 0x10
    SESSION_APPEND = 0x11
    SESSION_SUSPEND = 0x12
    SESSION_RESUME = 0x13
    SESSION_FORK = 0x14
    SESSION_CLOSE = 0x15
    SESSION_INFO = 0x16
    INVALIDATE_KEYS = 0x20
    INVALIDATE_PREFIX = 0x21
    INVALIDATE_SESSION = 0x22
    INVALIDATE_MODEL = 0x23
    INVALIDATE_NAMESPACE = 0x24
    CAPABILITIES = 0x30
    STATS = 0x31
    PING = 0x32
    GOODBYE = 0x33
    ERROR = 0x7F
    # NIXL data path (memkv+nixl://, spec/wire.md section 8): control over this socket, bulk by NIXL.
    NIXL_HELLO = 0x40
    NIXL_PUT = 0x41
    NIXL_GET = 0x42
    NIXL_ALLOC = 0x43
    NIXL_COMMIT = 0x44
    NIXL_SERVER_AGENT = 0x45
    NIXL_CREDIT = 0x46
    NIXL_STORE = 0x47


KNOWN_OPCODES = frozenset(int(op) for op in Opcode)


class Role(enum.IntEnum):
    """What a key grants on its namespace; each role includes the ones below it."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"role must be read, write or admin, not {text!r}") from None


# The least role each request opcode needs (MKV-NS-006). HELLO, ERROR and GOODBYE need none.
REQUIRED_ROLE: dict[Opcode, Role] = {
    Opcode.GET: Role.READ,
    Opcode.STAT: Role.READ,
    Opcode.EXISTS: Role.READ,
    Opcode.LOOKUP: Role.READ,
    Opcode.RELEASE_LEASE: Role.READ,
    Opcode.CHILDREN: Role.READ,
    Opcode.SESSION_INFO: Role.READ,
    Opcode.CAPABILITIES: Role.READ,
    Opcode.STATS: Role.READ,
    Opcode.PING: Role.READ,
    Opcode.PUT: Role.WRITE,
    Opcode.DELETE: Role.WRITE,
    Opcode.SESSION_OPEN: Role.WRITE,
    Opcode.SESSION_APPEND: Role.WRITE,
    Opcode.SESSION_SUSPEND: Role.WRITE,
    Opcode.SESSION_RESUME: Role.WRITE,
    Opcode.SESSION_FORK: Role.WRITE,
    Opcode.SESSION_CLOSE: Role.WRITE,
    Opcode.INVALIDATE_KEYS: Role.WRITE,
    Opcode.INVALIDATE_PREFIX: Role.WRITE,
    Opcode.INVALIDATE_SESSION: Role.WRITE,
    Opcode.INVALIDATE_MODEL: Role.WRITE,
    Opcode.INVALIDATE_NAMESPACE: Role.ADMIN,
    Opcode.NIXL_HELLO: Role.READ,
    Opcode.NIXL_GET: Role.READ,
    Opcode.NIXL_PUT: Role.WRITE,
    Opcode.NIXL_ALLOC: Role.WRITE,
    Opcode.NIXL_COMMIT: Role.WRITE,
    Opcode.NIXL_SERVER_AGENT: Role.READ,
    Opcode.NIXL_CREDIT: Role.WRITE,
    Opcode.NIXL_STORE: Role.WRITE,
}

# The wire minor version that introduced an opcode, where later than 1.1 (MKV-WIRE-045).
SINCE_MINOR: dict[Opcode, int] = {Opcode.CHILDREN: 2, Opcode.NIXL_CREDIT: 2, Opcode.NIXL_STORE: 2}

# Opcodes whose frames may carry a bulk payload after the metadata (MKV-WIRE-006).
PAYLOAD_REQUESTS = frozenset({Opcode.PUT})
PAYLOAD_RESPONSES = frozenset({Opcode.GET})
