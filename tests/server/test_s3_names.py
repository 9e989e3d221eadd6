"""S3 object names -> keys (spec/vectors/s3_names.json, MKV-S3-010) and Range parsing (MKV-S3-041)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import xxhash

from memkv.errors import ErrorCode, MemkvError
from memkv.server.s3.errors import S3Error
from memkv.server.s3.names import object_key, sequence_hash_name
from memkv.server.s3.ranges import byte_range

ROOT = Path(__file__).resolve().parents[2]
VECTORS: dict[str, Any] = json.loads((ROOT / "spec" / "vectors" / "s3_names.json").read_text(encoding="utf-8"))


@pytest.mark.requirement("MKV-S3-010")
@pytest.mark.parametrize("case", VECTORS["valid"], ids=[c["name"] for c in VECTORS["valid"]])
def test_valid_names_map_to_their_keys(case: dict[str, Any]) -> None:
    assert object_key(case["object"]).hex() == case["key"]


@pytest.mark.requirement("MKV-S3-010")
@pytest.mark.parametrize("case", VECTORS["invalid"], ids=[c["name"] for c in VECTORS["invalid"]])
def test_invalid_names_are_refused(case: dict[str, Any]) -> None:
    with pytest.raises(MemkvError) as caught:
        object_key(case["object"])
    assert caught.value.code is ErrorCode[case["error"]]


@pytest.mark.requirement("MKV-S3-010", "MKV-KEY-005")
def test_sequence_hash_names_follow_the_mkv1_seq_layout_independently() -> None:
    """Recompute with raw xxhash and struct, so the vectors are not checked only against themselves."""
    fingerprint = bytes.fromhex(VECTORS["fingerprint"])
    for case in VECTORS["valid"]:
        if len(case["object"]) <= 20:
            data = b"MKV1-SEQ" + fingerprint + struct.pack("<Q", int(case["object"]))
            assert xxhash.xxh3_128(data, seed=0).digest().hex() == case["key"]
        else:
            assert case["key"] == case["object"]


def test_names_of_sequence_hashes_round_trip() -> None:
    for value in (0, 7, 2**63, 2**64 - 1):
        assert object_key(sequence_hash_name(value)) == object_key(str(value))
    with pytest.raises(MemkvError):
        sequence_hash_name(2**64)


def test_the_vector_file_is_current() -> None:
    tool = ROOT / "tools" / "gen_vectors.py"
    assert subprocess.run([sys.executable, str(tool), "--check"], check=False).returncode == 0


@pytest.mark.requirement("MKV-S3-041")
@pytest.mark.parametrize(("header", "length", "expected"), [
    ("bytes=0-99", 1000, (0, 99)), ("bytes=900-", 1000, (900, 999)), ("bytes=-100", 1000, (900, 999)),
    ("bytes=990-2000", 1000, (990, 999)), ("bytes=-5000", 1000, (0, 999)), ("bytes=999-999", 1000, (999, 999)),
    (None, 1000, None), ("bytes=0-1,5-9", 1000, None), ("items=0-9", 1000, None), ("bytes=9-0", 1000, None),
    ("bytes=" + "1" * 21 + "-", 1000, None), ("bytes=abc", 1000, None)])
def test_byte_ranges(header: str | None, length: int, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, length) == expected


@pytest.mark.requirement("MKV-S3-041")
@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_unsatisfiable_ranges_are_416_with_the_length(header: str) -> None:
    with pytest.raises(S3Error) as caught:
        byte_range(header, 1000)
    assert caught.value.status == 416 and caught.value.code == "InvalidRange"
    assert caught.value.headers == (("Content-Range", "bytes */1000"),)
