"""Block keys and their normative derivation (spec section "Keys", MKV-KEY-*).

Every function here is deterministic across processes, languages and machines: it uses
XXH3-128 with seed 0 over explicitly laid out little-endian bytes, never Python's `hash()`.
The 16-byte digest is XXH3-128's canonical (big-endian) form, as `xxhash.xxh3_128().digest()`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

import xxhash

from .errors import InvalidArgument, InvalidKey

KEY_SIZE = 16
FINGERPRINT_SIZE = 16
MAX_ENGINE_HASH_SIZE = 64
MAX_TOKEN_ID = 2**32 - 1

ROOT_PARENT = bytes(KEY_SIZE)
NO_FINGERPRINT = bytes(FINGERPRINT_SIZE)

_CHAIN_TAG = b"MKV1"
_SEQUENCE_HASH_TAG = b"MKV1-SEQ"
_ENGINE_HASH_TAG = b"MKV1-EXT"
_FINGERPRINT_HEADER = "memkv-model-v1\n"


def _xxh3_128(data: bytes) -> bytes:
    return xxhash.xxh3_128(data, seed=0).digest()


def check_key(key: object) -> bytes:
    """Return `key` as bytes, or raise InvalidKey when it is not exactly KEY_SIZE bytes."""
    if not isinstance(key, bytes | bytearray | memoryview):
        raise InvalidKey(f"key must be bytes, got {type(key).__name__}")
    raw = bytes(key)
    if len(raw) != KEY_SIZE:
        raise InvalidKey(f"key must be {KEY_SIZE} bytes, got {len(raw)}")
    return raw


def check_fingerprint(fingerprint: object) -> bytes:
    if not isinstance(fingerprint, bytes | bytearray | memoryview):
        raise InvalidArgument(f"fingerprint must be bytes, got {type(fingerprint).__name__}")
    raw = bytes(fingerprint)
    if len(raw) != FINGERPRINT_SIZE:
        raise InvalidArgument(f"fingerprint must be {FINGERPRINT_SIZE} bytes, got {len(raw)}")
    return raw


def model_fingerprint(model: str, **attributes: object) -> bytes:
    """Fingerprint of everything that makes KV bytes incompatible (MKV-KEY-004).

    Input text: the line `memkv-model-v1`, then `model=<model>` and one `name=value` line per
    attribute, attributes sorted by name, text values as they are and non-negative
    integers in decimal (anything else is refused, MKV-KEY-008), each line ending in LF,
    encoded as UTF-8. Typical attributes: dtype, tp_size, tp_rank, kv_layout, revision.
    """
    if not model:
        raise InvalidArgument("model name must not be empty")
    fields: Mapping[str, object] = {"model": model, **attributes}
    lines = [_FINGERPRINT_HEADER]
    for name in sorted(fields):
        value = _descriptor_value(name, fields[name])
        if not name or "\n" in name or "\n" in value or "=" in name:
            raise InvalidArgument(f"fingerprint attribute {name!r} contains '=' or a newline")
        lines.append(f"{name}={value}\n")
    return _xxh3_128("".join(lines).encode("utf-8"))


def _descriptor_value(name: str, value: object) -> str:
    """Text as it is, a non-negative integer in decimal; anything else is refused (MKV-KEY-008)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    raise InvalidArgument(f"fingerprint attribute {name!r} must be text or a non-negative integer, not {value!r}")


def _pack_tokens(tokens: Sequence[int]) -> bytes:
    for token in tokens:
        if not 0 <= token <= MAX_TOKEN_ID:
            raise InvalidArgument(f"token id {token} is outside 0..{MAX_TOKEN_ID}")
    return struct.pack(f"<I{len(tokens)}I", len(tokens), *tokens)


def block_key(fingerprint: bytes, parent: bytes, tokens: Sequence[int]) -> bytes:
    """Key of one block: XXH3-128("MKV1" | fingerprint | parent | u32 n | n x u32 tokens)."""
    if not tokens:
        raise InvalidArgument("a block holds at least one token")
    data = _CHAIN_TAG + check_fingerprint(fingerprint) + check_key(parent) + _pack_tokens(tokens)
    return _xxh3_128(data)


def prefix_chain(fingerprint: bytes, tokens: Sequence[int], block_tokens: int) -> list[bytes]:
    """Keys of the full blocks of `tokens`, each chained on the one before (MKV-KEY-002).

    A trailing partial block gets no key: engines cache only full blocks.
    """
    if block_tokens <= 0:
        raise InvalidArgument("block_tokens must be positive")
    keys: list[bytes] = []
    parent = ROOT_PARENT
    for start in range(0, len(tokens) - block_tokens + 1, block_tokens):
        parent = block_key(fingerprint, parent, tokens[start : start + block_tokens])
        keys.append(parent)
    return keys


def key_from_sequence_hash(fingerprint: bytes, sequence_hash: int) -> bytes:
    """Key for a 64-bit engine sequence hash (Dynamo KVBM's SequenceHash) (MKV-KEY-005)."""
    if not 0 <= sequence_hash < 2**64:
        raise InvalidArgument("sequence hash must be an unsigned 64-bit integer")
    data = _SEQUENCE_HASH_TAG + check_fingerprint(fingerprint) + struct.pack("<Q", sequence_hash)
    return _xxh3_128(data)


def key_from_engine_hash(fingerprint: bytes, engine_hash: bytes) -> bytes:
    """Key for an opaque engine block hash of 1..64 bytes (MKV-KEY-006)."""
    raw = bytes(engine_hash)
    if not 1 <= len(raw) <= MAX_ENGINE_HASH_SIZE:
        raise InvalidArgument(f"engine hash must be 1..{MAX_ENGINE_HASH_SIZE} bytes")
    data = _ENGINE_HASH_TAG + check_fingerprint(fingerprint) + struct.pack("<H", len(raw)) + raw
    return _xxh3_128(data)

