"""Keys of engine blocks, the same in every adapter (spec section "Keys", MKV-INT-001..003, 005).

Engines already name their blocks by a hash of the whole prefix; an adapter maps that hash to a
memkv key with MKV-KEY-006 under a fingerprint of everything that makes the KV bytes
incompatible, so two processes of one engine (and two engines that lay out KV bytes the same
way) find each other's blocks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

from ..errors import InvalidArgument
from ..keys import MAX_ENGINE_HASH_SIZE, key_from_engine_hash, model_fingerprint

_U64 = 2**64
_I64_MIN = -(2**63)
_MAX_INT = 2 ** (8 * MAX_ENGINE_HASH_SIZE)


class UnpinnedHashSeed(RuntimeError):
    """The engine hashes blocks with Python's `hash()` and PYTHONHASHSEED is not pinned (MKV-INT-003)."""


def engine_hash_bytes(engine_hash: bytes | bytearray | memoryview | int | str) -> bytes:
    """The bytes an adapter maps with MKV-KEY-006 (MKV-INT-001).

    Bytes as they are; a negative integer (from -2^63) as the u64le of its value plus 2^64, a
    non-negative one in little-endian order in 8 bytes, or in as few bytes as hold it when it
    needs more than 8 (LMCache hands out 256-bit chunk hashes); text (hex digests) as UTF-8.
    """
    if isinstance(engine_hash, bool):
        raise InvalidArgument("an engine hash is bytes, an integer or text, not a bool")
    if isinstance(engine_hash, int):
        if not _I64_MIN <= engine_hash < _MAX_INT:
            raise InvalidArgument(f"integer engine hash {engine_hash} is outside -2^63..2^512-1")
        value = engine_hash % _U64 if engine_hash < 0 else engine_hash
        return value.to_bytes(max(8, (value.bit_length() + 7) // 8), "little")
    if isinstance(engine_hash, str):
        return engine_hash.encode("utf-8")
    return bytes(engine_hash)


def part_hash(engine_hash: bytes | bytearray | memoryview | int | str, part: int) -> bytes:
    """The engine hash of part `part` of an engine block stored as several memkv blocks (MKV-INT-005)."""
    if part < 0:
        raise InvalidArgument(f"a part number is not negative, got {part}")
    return hashlib.sha256(engine_hash_bytes(engine_hash) + b"#" + str(part).encode("ascii")).digest()


def hash_seed_attributes(engine: str, uses_python_hash: bool,
                         environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Refuse an unpinned PYTHONHASHSEED where the engine's hash depends on it (MKV-INT-003).

    Returns the fingerprint attribute that keeps processes with different seeds apart (their
    hashes of equal prefixes differ, so sharing keys between them would be wrong, not useful).
    """
    if not uses_python_hash:
        return {}
    seed = (os.environ if environ is None else environ).get("PYTHONHASHSEED", "")
    if not seed.isdigit():
        raise UnpinnedHashSeed(
            f"{engine} hashes blocks with Python's hash(), which differs between processes unless "
            f"PYTHONHASHSEED is pinned (it is {seed or 'unset'!s}); start every engine process with the same "
            f"PYTHONHASHSEED=<integer>, or configure a stable hash (sha256)")
    return {"python_hash_seed": str(int(seed))}


def adapter_fingerprint(model: str, *, layout: str, dtype: str, world_size: int, rank: int,
                        weights: str = "", extra: Mapping[str, str | int] | None = None) -> bytes:
    """Fingerprint of an adapter's blocks (MKV-INT-002): model, weights, layout, dtype, rank slice."""
    attributes: dict[str, str | int] = {"layout": layout, "dtype": dtype, "world_size": world_size, "rank": rank}
    if weights:
        attributes["weights"] = weights
    for name, value in (extra or {}).items():
        if name in attributes or name == "model":
            raise InvalidArgument(f"fingerprint attribute {name!r} is set by the adapter")
        attributes[name] = value
    return model_fingerprint(model, **attributes)


class EngineKeys:
    """Maps one engine instance's block hashes to memkv keys under one fingerprint."""

    def __init__(self, fingerprint: bytes) -> None:
        self.fingerprint = fingerprint

    def key(self, engine_hash: bytes | bytearray | memoryview | int | str) -> bytes:
        return key_from_engine_hash(self.fingerprint, engine_hash_bytes(engine_hash))

    def keys(self, engine_hashes: list[bytes] | list[int] | list[str]) -> list[bytes]:
        return [self.key(h) for h in engine_hashes]
