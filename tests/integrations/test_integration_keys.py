"""Keys of engine blocks, the same in every adapter (MKV-INT-001..003, 005)."""

from __future__ import annotations

import hashlib

import pytest

from memkv.errors import InvalidArgument
from memkv.integrations.engine_keys import (
    EngineKeys,
    UnpinnedHashSeed,
    adapter_fingerprint,
    engine_hash_bytes,
    hash_seed_attributes,
    part_hash,
)
from memkv.keys import key_from_engine_hash, model_fingerprint


@pytest.mark.requirement("MKV-INT-001")
def test_engine_hashes_are_written_as_the_spec_says() -> None:
    assert engine_hash_bytes(b"\x01\x02") == b"\x01\x02"
    assert engine_hash_bytes(0x0102) == bytes([2, 1, 0, 0, 0, 0, 0, 0])
    assert engine_hash_bytes(-1) == b"\xff" * 8 == engine_hash_bytes(2**64 - 1)
    assert engine_hash_bytes(-(2**63)) == engine_hash_bytes(2**63)
    assert engine_hash_bytes("ab12") == b"ab12"
    assert engine_hash_bytes(2**64) == bytes(8) + b"\x01"  # wider hashes (LMCache's 256-bit) need more bytes
    assert engine_hash_bytes(2**512 - 1) == b"\xff" * 64
    for outside in (2**512, -(2**63) - 1):
        with pytest.raises(InvalidArgument):
            engine_hash_bytes(outside)
    with pytest.raises(InvalidArgument):
        engine_hash_bytes(True)


@pytest.mark.requirement("MKV-INT-001")
def test_engine_keys_map_with_mkv_key_006() -> None:
    fingerprint = model_fingerprint("m")
    keys = EngineKeys(fingerprint)
    assert keys.key(-2) == key_from_engine_hash(fingerprint, (2**64 - 2).to_bytes(8, "little"))
    assert keys.key("f" * 64) == key_from_engine_hash(fingerprint, b"f" * 64)
    assert keys.keys([b"a", b"b"]) == [key_from_engine_hash(fingerprint, b"a"), key_from_engine_hash(fingerprint, b"b")]
    with pytest.raises(InvalidArgument):
        keys.key(b"")  # MKV-KEY-006 refuses an empty hash


@pytest.mark.requirement("MKV-INT-002")
def test_the_fingerprint_names_everything_that_changes_the_bytes() -> None:
    base = {"layout": "l", "dtype": "bfloat16", "world_size": 2, "rank": 1}
    fingerprint = adapter_fingerprint("m", **base)  # type: ignore[arg-type]
    assert fingerprint == model_fingerprint("m", layout="l", dtype="bfloat16", world_size=2, rank=1)
    variants = [adapter_fingerprint("other", **base),  # type: ignore[arg-type]
                adapter_fingerprint("m", **{**base, "layout": "l2"}),  # type: ignore[arg-type]
                adapter_fingerprint("m", **{**base, "dtype": "float16"}),  # type: ignore[arg-type]
                adapter_fingerprint("m", **{**base, "world_size": 4}),  # type: ignore[arg-type]
                adapter_fingerprint("m", **{**base, "rank": 0}),  # type: ignore[arg-type]
                adapter_fingerprint("m", **base, weights="rev-2"),  # type: ignore[arg-type]
                adapter_fingerprint("m", **base, extra={"cache_salt": "u1"})]  # type: ignore[arg-type]
    assert len({fingerprint, *variants}) == 1 + len(variants)
    with pytest.raises(InvalidArgument):
        adapter_fingerprint("m", **base, extra={"dtype": "x"})  # type: ignore[arg-type]


@pytest.mark.requirement("MKV-INT-003")
@pytest.mark.parametrize("environ", [{}, {"PYTHONHASHSEED": "random"}, {"PYTHONHASHSEED": ""}])
def test_an_unpinned_hash_seed_is_refused(environ: dict[str, str]) -> None:
    with pytest.raises(UnpinnedHashSeed, match="PYTHONHASHSEED"):
        hash_seed_attributes("Engine", uses_python_hash=True, environ=environ)


@pytest.mark.requirement("MKV-INT-003")
def test_a_pinned_seed_joins_the_fingerprint_and_stable_hashes_need_none() -> None:
    assert hash_seed_attributes("Engine", uses_python_hash=True, environ={"PYTHONHASHSEED": "0"}) == {
        "python_hash_seed": "0"}
    assert hash_seed_attributes("Engine", uses_python_hash=False, environ={}) == {}


@pytest.mark.requirement("MKV-INT-005")
def test_a_part_of_an_engine_block_hashes_the_block_hash_and_its_number() -> None:
    page = "9f" * 32  # SGLang's page hashes are 64 hex characters: no room for a suffix
    assert part_hash(page, 1) == hashlib.sha256(page.encode() + b"#1").digest()
    assert part_hash(page.encode(), 12) == hashlib.sha256(page.encode() + b"#12").digest()
    assert len({part_hash(page, n) for n in range(4)} | {part_hash("9e" * 32, 0)}) == 5
    with pytest.raises(InvalidArgument):
        part_hash(page, -1)
