"""The language-neutral vectors of spec/vectors/ against memkv, and a few against raw xxhash.

The independent checks at the end rebuild inputs with `struct` and call `xxhash` directly,
following the byte layouts of the spec text, so that memkv.keys is not checked only against
its own output.
"""

from __future__ import annotations

import json
import struct
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import xxhash

from memkv import keys as K
from memkv.blocks import BlockMeta
from memkv.checksum import payload_checksum
from memkv.errors import ErrorCode, MemkvError

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "spec" / "vectors"
sys.path.insert(0, str(ROOT / "tools"))
from gen_vectors import EDGE_CHECKSUMS, expand_bytes, expand_tokens  # noqa: E402
from xxh3_preimage import preimage  # noqa: E402

KEYS: dict[str, Any] = json.loads((VECTORS / "keys.json").read_text(encoding="utf-8"))
CHECKSUMS: dict[str, Any] = json.loads((VECTORS / "checksums.json").read_text(encoding="utf-8"))


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in cases]


def _tokens(case: dict[str, Any]) -> list[int]:
    return expand_tokens(case["tokens_rule"]) if "tokens_rule" in case else list(case["tokens"])


# ---- the files themselves ---------------------------------------------------------------------
def test_vector_files_are_large_enough_and_current() -> None:
    key_cases = sum(len(KEYS[k]) for k in ("fingerprints", "block_keys", "chains", "sequence_hashes",
                                             "engine_hashes", "invalid"))
    assert key_cases >= 20 and len(KEYS["invalid"]) >= 10
    assert len(CHECKSUMS["cases"]) >= 20
    assert max(c.get("length", 0) for c in CHECKSUMS["cases"]) == 16 * 1024 * 1024
    import gen_vectors

    assert gen_vectors.render(gen_vectors.build_keys()) == (VECTORS / "keys.json").read_text(encoding="utf-8")
    assert gen_vectors.render(gen_vectors.build_checksums()) == (VECTORS / "checksums.json").read_text(
        encoding="utf-8")


# ---- memkv reproduces every vector ------------------------------------------------------------
@pytest.mark.requirement("MKV-KEY-004")
@pytest.mark.parametrize("case", KEYS["fingerprints"], ids=_ids(KEYS["fingerprints"]))
def test_fingerprint(case: dict[str, Any]) -> None:
    assert K.model_fingerprint(case["model"], **case["attributes"]).hex() == case["fingerprint"]


@pytest.mark.requirement("MKV-KEY-002")
@pytest.mark.parametrize("case", KEYS["block_keys"], ids=_ids(KEYS["block_keys"]))
def test_block_key(case: dict[str, Any]) -> None:
    key = K.block_key(bytes.fromhex(case["fingerprint"]), bytes.fromhex(case["parent"]), case["tokens"])
    assert key.hex() == case["key"]


@pytest.mark.requirement("MKV-KEY-002")
@pytest.mark.parametrize("case", KEYS["chains"], ids=_ids(KEYS["chains"]))
def test_prefix_chain(case: dict[str, Any]) -> None:
    tokens = _tokens(case)
    keys = K.prefix_chain(bytes.fromhex(case["fingerprint"]), tokens, case["block_tokens"])
    assert [k.hex() for k in keys] == case["keys"]
    assert len(keys) == len(tokens) // case["block_tokens"]


@pytest.mark.requirement("MKV-KEY-005")
@pytest.mark.parametrize("case", KEYS["sequence_hashes"], ids=_ids(KEYS["sequence_hashes"]))
def test_sequence_hash(case: dict[str, Any]) -> None:
    key = K.key_from_sequence_hash(bytes.fromhex(case["fingerprint"]), int(case["sequence_hash"]))
    assert key.hex() == case["key"]


@pytest.mark.requirement("MKV-KEY-006")
@pytest.mark.parametrize("case", KEYS["engine_hashes"], ids=_ids(KEYS["engine_hashes"]))
def test_engine_hash(case: dict[str, Any]) -> None:
    key = K.key_from_engine_hash(bytes.fromhex(case["fingerprint"]), bytes.fromhex(case["engine_hash"]))
    assert key.hex() == case["key"]


def _call_invalid(case: dict[str, Any]) -> None:
    args = dict(case["input"])
    op = case["operation"]
    if op == "model_fingerprint":
        K.model_fingerprint(args["model"], **args["attributes"])
        return
    for name in ("fingerprint", "parent", "engine_hash", "key"):
        if name in args:
            args[name] = bytes.fromhex(args[name])
    if "sequence_hash" in args:
        args["sequence_hash"] = int(args["sequence_hash"])
    getattr(K, op)(**args)


@pytest.mark.requirement("MKV-KEY-001", "MKV-KEY-002", "MKV-KEY-004", "MKV-KEY-005", "MKV-KEY-006", "MKV-KEY-007")
@pytest.mark.parametrize("case", KEYS["invalid"], ids=_ids(KEYS["invalid"]))
def test_invalid_input_gets_its_error_code(case: dict[str, Any]) -> None:
    with pytest.raises(MemkvError) as info:
        _call_invalid(case)
    assert info.value.code is ErrorCode[case["error"]]


@pytest.mark.requirement("MKV-BLK-005")
@pytest.mark.parametrize("case", CHECKSUMS["cases"], ids=_ids(CHECKSUMS["cases"]))
def test_checksum(case: dict[str, Any]) -> None:
    data = expand_bytes(case)
    if "length" in case:
        assert len(data) == case["length"]
    value = payload_checksum(data)
    assert value == int(case["checksum"])
    assert f"{value:016x}" == case["checksum_hex"]


# ---- independent recomputation: raw xxhash and struct, following the spec text ---------------
def _h128(data: bytes) -> str:
    # The canonical form is the 128-bit value big-endian; check both ways of getting it.
    digest = xxhash.xxh3_128(data, seed=0).digest()
    assert digest == xxhash.xxh3_128_intdigest(data, seed=0).to_bytes(16, "big")
    return digest.hex()


def _first(section: str, name: str) -> dict[str, Any]:
    return next(c for c in KEYS[section] if c["name"] == name)


@pytest.mark.requirement("MKV-KEY-004")
def test_fingerprint_independently() -> None:
    for case in KEYS["fingerprints"]:
        fields = {"model": case["model"], **{k: str(v) for k, v in case["attributes"].items()}}
        text = "memkv-model-v1\n" + "".join(f"{name}={fields[name]}\n" for name in sorted(fields))
        assert text == case["descriptor"]
        assert _h128(text.encode("utf-8")) == case["fingerprint"]
    # No Unicode normalisation: the two spellings of "café" are different models.
    pre, dec = _first("fingerprints", "precomposed e-acute"), _first("fingerprints", "decomposed e-acute (no "
                                                                                       "normalisation)")
    assert unicodedata.normalize("NFC", dec["model"]) == pre["model"]
    assert pre["fingerprint"] != dec["fingerprint"]


@pytest.mark.requirement("MKV-KEY-002")
def test_block_keys_and_chains_independently() -> None:
    for case in KEYS["block_keys"]:
        tokens = case["tokens"]
        data = (b"MKV1" + bytes.fromhex(case["fingerprint"]) + bytes.fromhex(case["parent"])
                + struct.pack("<I", len(tokens)) + b"".join(struct.pack("<I", t) for t in tokens))
        assert _h128(data) == case["key"]
    for name in ("three blocks of 16", "trailing partial block gets no key", "extremes, block of 2",
                 "many tokens: 4096 in blocks of 16"):
        case = _first("chains", name)
        tokens, size = _tokens(case), case["block_tokens"]
        fingerprint, parent, keys = bytes.fromhex(case["fingerprint"]), bytes(16), []
        for start in range(0, len(tokens) // size * size, size):
            block = tokens[start : start + size]
            parent = bytes.fromhex(_h128(b"MKV1" + fingerprint + parent + struct.pack(f"<{size + 1}I", size, *block)))
            keys.append(parent.hex())
        assert keys == case["keys"]


@pytest.mark.requirement("MKV-KEY-005", "MKV-KEY-006")
def test_engine_mappings_independently() -> None:
    for case in KEYS["sequence_hashes"]:
        data = b"MKV1-SEQ" + bytes.fromhex(case["fingerprint"]) + int(case["sequence_hash"]).to_bytes(8, "little")
        assert _h128(data) == case["key"]
    for case in KEYS["engine_hashes"]:
        raw = bytes.fromhex(case["engine_hash"])
        data = b"MKV1-EXT" + bytes.fromhex(case["fingerprint"]) + len(raw).to_bytes(2, "little") + raw
        assert _h128(data) == case["key"]


@pytest.mark.requirement("MKV-BLK-005")
def test_checksums_independently() -> None:
    assert xxhash.xxh3_64_intdigest(b"", seed=0) == 0x2D06800538D394C2  # published XXH3-64 of ""
    rules = {"i % 251": lambda i: i % 251, "mix32": lambda i: ((i * 2654435761) % 2**32) >> 24}
    checked = 0
    for case in CHECKSUMS["cases"]:
        if "data_hex" in case:
            data = bytes.fromhex(case["data_hex"])
        elif case["pattern"] in rules and case["length"] <= 65536:
            data = bytes(rules[case["pattern"]](i) for i in range(case["length"]))
        else:
            continue
        assert xxhash.xxh3_64(data, seed=0).hexdigest() == case["checksum_hex"]
        assert xxhash.xxh3_64_intdigest(data, seed=0) == int(case["checksum"])
        checked += 1
    assert checked >= 12


@pytest.mark.requirement("MKV-BLK-005")
def test_the_edge_cases_hash_to_the_edges_of_64_bits() -> None:
    edges = {c["name"].removeprefix("8 bytes whose checksum is "): c for c in CHECKSUMS["cases"]
             if c["name"].startswith("8 bytes whose checksum is ")}
    assert set(edges) == set(EDGE_CHECKSUMS) == {"0", "2^63 - 1", "2^63", "2^64 - 1"}
    for name, case in edges.items():
        data = bytes.fromhex(case["data_hex"])
        assert len(data) == 8 and xxhash.xxh3_64_intdigest(data, seed=0) == EDGE_CHECKSUMS[name]


@pytest.mark.parametrize("target", [1, 12345, 2**32, 2**62 + 7, 0xDEADBEEFCAFEF00D])
def test_xxh3_preimages_hash_to_their_target(target: int) -> None:
    data = preimage(target)
    assert len(data) == 8 and xxhash.xxh3_64_intdigest(data, seed=0) == target
    with pytest.raises(ValueError):
        preimage(2**64)


@pytest.mark.requirement("MKV-BLK-003")
def test_metadata_example_of_the_spec_text() -> None:
    """The worked metadata encoding in section 3, rebuilt with struct and with memkv."""
    text = (ROOT / "spec" / "memkv-spec.md").read_text(encoding="utf-8")
    example = text.split("user `hi` encodes as the 55 bytes", 1)[1].split("**MKV-BLK-004**", 1)[0]
    expected = bytes.fromhex("".join(example.split()))
    raw = struct.pack("<BBIHHHHBH16s16s", 1, 0, 16, 0, 31, 1, 2, 4, 2, b"\x11" * 16, b"\x22" * 16) + b"bf16hi"
    assert raw == expected and len(raw) == 55
    meta = BlockMeta(fingerprint=b"\x11" * 16, parent=b"\x22" * 16, dtype="bf16", token_count=16,
                     layer_first=0, layer_last=31, tp_rank=1, tp_size=2, user=b"hi")
    assert meta.encode() == expected
    assert BlockMeta.decode(expected) == meta
