#!/usr/bin/env python3
"""Regenerate the language-neutral test vectors of spec/vectors/ from the memkv package.

    python tools/gen_vectors.py            # rewrite every file of spec/vectors/ but README.md
    python tools/gen_vectors.py --check    # exit 1 if the files differ from what memkv computes

The case lists below are the source of the vectors; memkv computes the expected outputs.
The file formats (hex bytes, decimal strings for 64-bit integers, generator rules for large
inputs) are described in spec/vectors/README.md; `expand_tokens` and `expand_bytes` are the
reference implementations of the generator rules.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from xxh3_preimage import preimage  # tools/, beside this script

from memkv import keys as K
from memkv.checksum import payload_checksum
from memkv.cluster.vectors import placement_vectors
from memkv.errors import MemkvError
from memkv.server.s3.names import object_key
from memkv.transport import SPEC_VERSION
from memkv.wire.vectors import build_vectors as build_frames

ROOT = Path(__file__).resolve().parent.parent
VECTOR_DIR = ROOT / "spec" / "vectors"
U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
MiB = 1024 * 1024


# ---- generator rules (mirrored in spec/vectors/README.md and tests/test_vectors.py) ---------
def expand_tokens(rule: dict[str, int]) -> list[int]:
    """`{"count": n, "a": a, "b": b}` -> token i = (a * i + b) mod 2^32, for i in 0..n-1."""
    a, b = rule["a"], rule["b"]
    return [(a * i + b) % 2**32 for i in range(rule["count"])]


def expand_bytes(case: dict[str, Any]) -> bytes:
    """The payload of a checksum case: explicit `data_hex`, or `length` bytes of `pattern`."""
    if "data_hex" in case:
        return bytes.fromhex(case["data_hex"])
    n, pattern = case["length"], case["pattern"]
    i = np.arange(n, dtype=np.uint64)
    if pattern == "zeros":
        return bytes(n)
    if pattern == "ones":
        return b"\xff" * n
    if pattern == "i % 251":
        return (i % 251).astype(np.uint8).tobytes()
    if pattern == "i % 256":
        return (i % 256).astype(np.uint8).tobytes()
    if pattern == "mix32":  # ((i * 2654435761) mod 2^32) >> 24
        return (((i * 2654435761) % 2**32) >> 24).astype(np.uint8).tobytes()
    if pattern == "repeat":
        unit = bytes.fromhex(case["repeat_hex"])
        return (unit * (n // len(unit) + 1))[:n]
    raise ValueError(f"unknown pattern {pattern!r}")


# ---- cases ------------------------------------------------------------------------------------
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"

FINGERPRINT_CASES: list[dict[str, Any]] = [
    {"name": "model only", "model": LLAMA, "attributes": {}},
    {"name": "dtype and tp 1", "model": LLAMA, "attributes": {"dtype": "bfloat16", "tp_size": 1, "tp_rank": 0}},
    {"name": "tp rank 3 of 8", "model": LLAMA, "attributes": {"dtype": "bfloat16", "tp_size": 8, "tp_rank": 3}},
    {"name": "layout and revision", "model": "Qwen/Qwen2.5-72B-Instruct",
     "attributes": {"kv_layout": "NHD", "revision": "a09a35458c702b33eeacc393d103063234e8bc28",
                    "dtype": "float8_e4m3fn"}},
    {"name": "attribute sorting before model", "model": "m",
     "attributes": {"adapter": "lora-7", "zz": "last", "block_tokens": 16}},
    {"name": "unicode model (CJK)", "model": "模型/通义千问-7B", "attributes": {"dtype": "bf16"}},
    {"name": "unicode model (Cyrillic, emoji)", "model": "Модель-🚀", "attributes": {}},
    {"name": "precomposed e-acute", "model": "caf\u00e9", "attributes": {}},
    {"name": "decomposed e-acute (no normalisation)", "model": "cafe\u0301", "attributes": {}},
    {"name": "value with '=' and spaces, empty value", "model": "x",
     "attributes": {"note": "a=b c", "empty": ""}},
]

INVALID_FINGERPRINTS: list[dict[str, Any]] = [
    {"name": "empty model name", "model": "", "attributes": {}},
    {"name": "'=' in attribute name", "model": "x", "attributes": {"a=b": "1"}},
    {"name": "newline in attribute value", "model": "x", "attributes": {"a": "1\n2"}},
    {"name": "newline in model name", "model": "x\ny", "attributes": {}},
    {"name": "boolean value", "model": "x", "attributes": {"a": True}},
    {"name": "fraction value", "model": "x", "attributes": {"a": 1.5}},
    {"name": "null value", "model": "x", "attributes": {"a": None}},
    {"name": "negative integer value", "model": "x", "attributes": {"tp_rank": -1}},
]

FP_LLAMA = K.model_fingerprint(LLAMA, dtype="bfloat16", tp_size=1, tp_rank=0)
FP_ZERO = K.NO_FINGERPRINT
FP_UNICODE = K.model_fingerprint("模型/通义千问-7B", dtype="bf16")
FP_MOONCAKE = K.model_fingerprint("mooncake-conversation-trace", block_tokens=512)

BLOCK_KEY_CASES: list[dict[str, Any]] = [
    {"name": "root, no fingerprint, token 0", "fingerprint": FP_ZERO, "parent": K.ROOT_PARENT, "tokens": [0]},
    {"name": "root, no fingerprint, three tokens", "fingerprint": FP_ZERO, "parent": K.ROOT_PARENT,
     "tokens": [1, 2, 3]},
    {"name": "root, llama, max token", "fingerprint": FP_LLAMA, "parent": K.ROOT_PARENT, "tokens": [U32_MAX]},
    {"name": "explicit parent 00..0f", "fingerprint": FP_LLAMA, "parent": bytes(range(16)),
     "tokens": [128000, 9906, 1917]},
    {"name": "parent all ff", "fingerprint": FP_UNICODE, "parent": b"\xff" * 16, "tokens": [0, U32_MAX, 0]},
]

CHAIN_CASES: list[dict[str, Any]] = [
    {"name": "one token, block of 1", "fingerprint": FP_LLAMA, "tokens": [42], "block_tokens": 1},
    {"name": "token 0", "fingerprint": FP_LLAMA, "tokens": [0], "block_tokens": 1},
    {"name": "token 2^32-1", "fingerprint": FP_LLAMA, "tokens": [U32_MAX], "block_tokens": 1},
    {"name": "one full block of 16", "fingerprint": FP_LLAMA, "tokens": list(range(16)), "block_tokens": 16},
    {"name": "three blocks of 16", "fingerprint": FP_LLAMA, "tokens": list(range(100, 148)), "block_tokens": 16},
    {"name": "trailing partial block gets no key", "fingerprint": FP_LLAMA, "tokens": list(range(100, 150)),
     "block_tokens": 16},
    {"name": "shorter than one block: no keys", "fingerprint": FP_LLAMA, "tokens": list(range(15)),
     "block_tokens": 16},
    {"name": "no tokens: no keys", "fingerprint": FP_LLAMA, "tokens": [], "block_tokens": 16},
    {"name": "extremes, block of 2", "fingerprint": FP_ZERO, "tokens": [0, U32_MAX, U32_MAX, 0, 7],
     "block_tokens": 2},
    {"name": "unicode-model fingerprint", "fingerprint": FP_UNICODE, "tokens": [5, 6, 7, 8], "block_tokens": 4},
    {"name": "many tokens: 4096 in blocks of 16", "fingerprint": FP_LLAMA,
     "tokens_rule": {"count": 4096, "a": 2654435761, "b": 7}, "block_tokens": 16},
    {"name": "LMCache-sized chunks of 256", "fingerprint": FP_LLAMA,
     "tokens_rule": {"count": 1100, "a": 48271, "b": 1}, "block_tokens": 256},
    {"name": "Mooncake-sized blocks of 512", "fingerprint": FP_MOONCAKE,
     "tokens_rule": {"count": 2048, "a": 1, "b": 0}, "block_tokens": 512},
]

INVALID_CHAINS: list[dict[str, Any]] = [
    {"name": "block_tokens 0", "fingerprint": FP_LLAMA, "tokens": [1, 2], "block_tokens": 0},
    {"name": "block_tokens negative", "fingerprint": FP_LLAMA, "tokens": [1, 2], "block_tokens": -1},
    {"name": "token 2^32 in a chain", "fingerprint": FP_LLAMA, "tokens": [1, 2**32], "block_tokens": 2},
]

SEQUENCE_HASH_CASES: list[dict[str, Any]] = [
    {"name": "zero", "fingerprint": FP_LLAMA, "sequence_hash": 0},
    {"name": "one", "fingerprint": FP_LLAMA, "sequence_hash": 1},
    {"name": "2^32", "fingerprint": FP_LLAMA, "sequence_hash": 2**32},
    {"name": "2^63", "fingerprint": FP_LLAMA, "sequence_hash": 2**63},
    {"name": "2^64-1", "fingerprint": FP_LLAMA, "sequence_hash": U64_MAX},
    {"name": "typical, no fingerprint", "fingerprint": FP_ZERO, "sequence_hash": 0x9E3779B97F4A7C15},
    {"name": "Mooncake trace hash_id 46", "fingerprint": FP_MOONCAKE, "sequence_hash": 46},
    {"name": "Mooncake trace hash_id 47", "fingerprint": FP_MOONCAKE, "sequence_hash": 47},
]

ENGINE_HASH_CASES: list[dict[str, Any]] = [
    {"name": "1 byte 00", "fingerprint": FP_LLAMA, "engine_hash": b"\x00"},
    {"name": "1 byte ff", "fingerprint": FP_LLAMA, "engine_hash": b"\xff"},
    {"name": "8 bytes (a u64 written big-endian by the engine)", "fingerprint": FP_LLAMA,
     "engine_hash": (0x9E3779B97F4A7C15).to_bytes(8, "big")},
    {"name": "16 bytes", "fingerprint": FP_ZERO, "engine_hash": bytes(range(16))},
    {"name": "32 bytes (SGLang-style sha256)", "fingerprint": FP_LLAMA,
     "engine_hash": hashlib.sha256(b"hello").digest()},
    {"name": "64 bytes (maximum)", "fingerprint": FP_UNICODE, "engine_hash": bytes(range(64))},
]

INVALID_SIMPLE: list[dict[str, Any]] = [
    {"name": "token 2^32", "operation": "block_key",
     "input": {"fingerprint": FP_LLAMA, "parent": K.ROOT_PARENT, "tokens": [2**32]}},
    {"name": "negative token", "operation": "block_key",
     "input": {"fingerprint": FP_LLAMA, "parent": K.ROOT_PARENT, "tokens": [1, -1]}},
    {"name": "empty block", "operation": "block_key",
     "input": {"fingerprint": FP_LLAMA, "parent": K.ROOT_PARENT, "tokens": []}},
    {"name": "fingerprint of 15 bytes", "operation": "block_key",
     "input": {"fingerprint": bytes(15), "parent": K.ROOT_PARENT, "tokens": [1]}},
    {"name": "fingerprint of 17 bytes", "operation": "block_key",
     "input": {"fingerprint": bytes(17), "parent": K.ROOT_PARENT, "tokens": [1]}},
    {"name": "parent of 15 bytes", "operation": "block_key",
     "input": {"fingerprint": FP_LLAMA, "parent": bytes(15), "tokens": [1]}},
    {"name": "parent of 17 bytes", "operation": "block_key",
     "input": {"fingerprint": FP_LLAMA, "parent": bytes(17), "tokens": [1]}},
    {"name": "engine hash of 0 bytes", "operation": "key_from_engine_hash",
     "input": {"fingerprint": FP_LLAMA, "engine_hash": b""}},
    {"name": "engine hash of 65 bytes", "operation": "key_from_engine_hash",
     "input": {"fingerprint": FP_LLAMA, "engine_hash": bytes(65)}},
    {"name": "engine hash with fingerprint of 0 bytes", "operation": "key_from_engine_hash",
     "input": {"fingerprint": b"", "engine_hash": b"\x01"}},
    {"name": "sequence hash 2^64", "operation": "key_from_sequence_hash",
     "input": {"fingerprint": FP_LLAMA, "sequence_hash": 2**64}},
    {"name": "sequence hash -1", "operation": "key_from_sequence_hash",
     "input": {"fingerprint": FP_LLAMA, "sequence_hash": -1}},
    {"name": "sequence hash with fingerprint of 8 bytes", "operation": "key_from_sequence_hash",
     "input": {"fingerprint": bytes(8), "sequence_hash": 1}},
    {"name": "key of 15 bytes", "operation": "check_key", "input": {"key": bytes(15)}},
    {"name": "key of 17 bytes", "operation": "check_key", "input": {"key": bytes(17)}},
    {"name": "key of 0 bytes", "operation": "check_key", "input": {"key": b""}},
]

CHECKSUM_CASES: list[dict[str, Any]] = [
    {"name": "empty", "data_hex": ""},
    {"name": "1 byte 00", "data_hex": "00"},
    {"name": "1 byte ff", "data_hex": "ff"},
    {"name": "ASCII 'abc'", "data_hex": b"abc".hex()},
    {"name": "ASCII 'memkv'", "data_hex": b"memkv".hex()},
    {"name": "8 bytes", "data_hex": "0001020304050607"},
]
_SIZED = [
    (3, "i % 251"), (4, "i % 251"), (9, "i % 251"), (16, "i % 251"), (17, "i % 251"), (64, "mix32"),
    (128, "i % 251"), (129, "i % 251"), (240, "i % 251"), (241, "i % 251"), (1024, "i % 256"),
    (1025, "mix32"), (4096, "zeros"), (4096, "ones"), (65536, "i % 251"), (1 * MiB, "mix32"),
    (2 * MiB, "i % 251"), (4 * MiB + 1, "mix32"), (16 * MiB, "i % 251"), (16 * MiB, "zeros"),
]
CHECKSUM_CASES += [{"name": f"{n} bytes, {p}", "length": n, "pattern": p} for n, p in _SIZED]
CHECKSUM_CASES += [{"name": "1000 bytes, repeat 'KV'", "length": 1000, "pattern": "repeat",
                    "repeat_hex": b"KV".hex()}]
# Checksums at the edges of 64 bits: a store that keeps them in a signed 64-bit column (SQLite,
# Java's long) must still store, answer and compare them as unsigned.
EDGE_CHECKSUMS = {"0": 0, "2^63 - 1": 2**63 - 1, "2^63": 2**63, "2^64 - 1": U64_MAX}
CHECKSUM_CASES += [{"name": f"8 bytes whose checksum is {name}", "data_hex": preimage(value).hex()}
                   for name, value in EDGE_CHECKSUMS.items()]


# ---- building -----------------------------------------------------------------------------------
def _hexify(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return value


def _error_of(fn: Any) -> str:
    try:
        fn()
    except MemkvError as exc:
        return exc.code.name
    raise AssertionError("expected an error")


def build_keys() -> dict[str, Any]:
    fingerprints = []
    for case in FINGERPRINT_CASES:
        fields = {"model": case["model"], **case["attributes"]}
        descriptor = "memkv-model-v1\n" + "".join(f"{n}={fields[n]}\n" for n in sorted(fields))
        fingerprints.append({**case, "descriptor": descriptor,
                             "fingerprint": K.model_fingerprint(case["model"], **case["attributes"]).hex()})
    block_keys = [{**{k: _hexify(v) for k, v in c.items()},
                   "key": K.block_key(c["fingerprint"], c["parent"], c["tokens"]).hex()} for c in BLOCK_KEY_CASES]
    chains = []
    for c in CHAIN_CASES:
        tokens = expand_tokens(c["tokens_rule"]) if "tokens_rule" in c else c["tokens"]
        keys = K.prefix_chain(c["fingerprint"], tokens, c["block_tokens"])
        chains.append({**{k: _hexify(v) for k, v in c.items()}, "keys": [k.hex() for k in keys]})
    sequence = [{"name": c["name"], "fingerprint": c["fingerprint"].hex(), "sequence_hash": str(c["sequence_hash"]),
                 "key": K.key_from_sequence_hash(c["fingerprint"], c["sequence_hash"]).hex()}
                for c in SEQUENCE_HASH_CASES]
    engine = [{"name": c["name"], "fingerprint": c["fingerprint"].hex(), "engine_hash": c["engine_hash"].hex(),
               "key": K.key_from_engine_hash(c["fingerprint"], c["engine_hash"]).hex()} for c in ENGINE_HASH_CASES]

    invalid: list[dict[str, Any]] = []
    for c in INVALID_FINGERPRINTS:
        error = _error_of(lambda c=c: K.model_fingerprint(c["model"], **c["attributes"]))
        invalid.append({"name": c["name"], "operation": "model_fingerprint",
                        "input": {"model": c["model"], "attributes": c["attributes"]}, "error": error})
    for c in INVALID_CHAINS:
        error = _error_of(lambda c=c: K.prefix_chain(c["fingerprint"], c["tokens"], c["block_tokens"]))
        invalid.append({"name": c["name"], "operation": "prefix_chain",
                        "input": {k: _hexify(v) for k, v in c.items() if k != "name"}, "error": error})
    for c in INVALID_SIMPLE:
        args = dict(c["input"])
        op = getattr(K, c["operation"])
        error = _error_of(lambda op=op, args=args: op(**args))
        if "sequence_hash" in args:
            args["sequence_hash"] = str(args["sequence_hash"])
        invalid.append({"name": c["name"], "operation": c["operation"],
                        "input": {k: _hexify(v) for k, v in args.items()}, "error": error})

    return {
        "spec_version": SPEC_VERSION,
        "generator": "tools/gen_vectors.py",
        "format": "see spec/vectors/README.md; bytes are lower-case hex, 64-bit integers decimal strings",
        "fingerprints": fingerprints,
        "block_keys": block_keys,
        "chains": chains,
        "sequence_hashes": sequence,
        "engine_hashes": engine,
        "invalid": invalid,
    }


def build_checksums() -> dict[str, Any]:
    cases = []
    for case in CHECKSUM_CASES:
        value = payload_checksum(expand_bytes(case))
        cases.append({**case, "checksum": str(value), "checksum_hex": f"{value:016x}"})
    return {
        "spec_version": SPEC_VERSION,
        "generator": "tools/gen_vectors.py",
        "algorithm": "XXH3-64, seed 0, over the payload bytes; the value as an unsigned 64-bit integer",
        "format": "see spec/vectors/README.md; checksum is a decimal string, checksum_hex 16 hex digits",
        "cases": cases,
    }


U64_MAX = 2**64 - 1
VALID = [("zero", "0"), ("one", "1"), ("kvbm-like", "1234567890123456789"), ("u64-max", str(U64_MAX)),
         ("u63-boundary", str(2**63)), ("raw-key", "00112233445566778899aabbccddeeff"),
         ("raw-key-all-digits", "0" * 32)]
INVALID = [("empty", ""), ("leading-zero", "01"), ("negative", "-1"), ("plus-sign", "+1"),
           ("over-u64", str(U64_MAX + 1)), ("twenty-nines", "9" * 20), ("twenty-one-digits", "1" * 21),
           ("upper-hex", "00112233445566778899AABBCCDDEEFF"), ("hex-31", "0" * 30 + "a"),
           ("hex-33", "a" * 33), ("path", "a/b"), ("space", " 1"), ("hex-prefix", "0x1f")]


def build_s3_names() -> dict[str, object]:
    """S3 object names and the keys they map to (spec/s3.md, MKV-S3-010)."""
    valid = [{"name": label, "object": obj, "key": object_key(obj).hex()} for label, obj in VALID]
    invalid = []
    for label, obj in INVALID:
        try:
            object_key(obj)
        except MemkvError as exc:
            invalid.append({"name": label, "object": obj, "error": exc.code.name})
        else:
            raise AssertionError(f"{obj!r} should be refused")
    return {"fingerprint": "00" * 16, "valid": valid, "invalid": invalid}


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on difference")
    args = parser.parse_args(argv)
    outputs = {VECTOR_DIR / "keys.json": render(build_keys()),
               VECTOR_DIR / "checksums.json": render(build_checksums()),
               VECTOR_DIR / "frames.json": json.dumps(build_frames(), indent=1, sort_keys=True) + "\n",
               VECTOR_DIR / "s3_names.json": json.dumps(build_s3_names(), indent=1) + "\n",
               VECTOR_DIR / "placement.json": json.dumps(placement_vectors(), indent=1) + "\n"}
    stale = []
    for path, text in outputs.items():
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    for path in stale:
        print(f"{path.relative_to(ROOT)} differs from what memkv computes; run tools/gen_vectors.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
