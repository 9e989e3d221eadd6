"""The memkv wire protocol codec: frames, opcodes, metadata and signing. Pure, no sockets."""

from .frames import (
    FLAG_RESPONSE,
    HEADER_SIZE,
    MAGIC,
    NO_MAC,
    PRE_AUTH_LIMITS,
    VERSION_MAJOR,
    VERSION_MINOR,
    Frame,
    Header,
    WireLimits,
    compute_mac,
    connection_key,
    decode_frame,
    encode_frame,
    parse_header,
    sign,
    verify,
)
from .messages import MetaReader, encode_meta
from .opcodes import REQUIRED_ROLE, Opcode, Role

__all__ = [
    "FLAG_RESPONSE", "HEADER_SIZE", "MAGIC", "NO_MAC", "PRE_AUTH_LIMITS", "REQUIRED_ROLE", "VERSION_MAJOR",
    "VERSION_MINOR", "Frame", "Header", "MetaReader", "Opcode", "Role", "WireLimits", "compute_mac",
    "connection_key", "decode_frame", "encode_frame", "encode_meta", "parse_header", "sign", "verify",
]
