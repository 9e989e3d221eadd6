"""The wire codec: header round trips, vectors, invalid frames, metadata bounds (MKV-WIRE-*)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from memkv.blocks import BlockMeta
from memkv.errors import ErrorCode, InvalidArgument, LimitExceeded, MemkvError, ProtocolError, UnsupportedVersion
from memkv.wire import messages as msg
from memkv.wire.frames import (
    HEADER_SIZE,
    MAGIC,
    PRE_AUTH_LIMITS,
    Header,
    WireLimits,
    decode_frame,
    encode_frame,
    parse_header,
)
from memkv.wire.opcodes import REQUIRED_ROLE, Opcode
from memkv.wire.vectors import SECRET, build_vectors

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors" / "frames.json"
req = pytest.mark.requirement


@req("MKV-WIRE-001", "MKV-WIRE-002")
def test_header_round_trip() -> None:
    header = Header(Opcode.PUT, 2**64 - 1, meta_len=12, payload_len=2**33, status=0)
    raw = header.pack()
    assert len(raw) == HEADER_SIZE and raw[:4] == MAGIC
    assert parse_header(raw, WireLimits(max_payload=2**34)) == header


@req("MKV-WIRE-004")
def test_every_request_opcode_has_a_role() -> None:
    requests = set(Opcode) - {Opcode.HELLO, Opcode.ERROR, Opcode.GOODBYE}
    assert requests == set(REQUIRED_ROLE)


@req("MKV-WIRE-016")
def test_vectors_file_matches_generator() -> None:
    assert json.loads(VECTORS.read_text()) == json.loads(json.dumps(build_vectors()))


@req("MKV-WIRE-003", "MKV-WIRE-005", "MKV-WIRE-007", "MKV-WIRE-010", "MKV-WIRE-016")
@pytest.mark.parametrize("vector", json.loads(VECTORS.read_text())["vectors"], ids=lambda v: v["name"])
def test_vector(vector: dict) -> None:  # type: ignore[type-arg]
    data = json.loads(VECTORS.read_text())
    limits = WireLimits(**data["limits"])
    secret = bytes.fromhex(data["secrets"]["vector"]) if vector["secret"] else None
    frame = bytes.fromhex(vector["frame_hex"])
    if vector["expect"] == "OK":
        decoded = decode_frame(frame, secret, limits)
        assert decoded.header.opcode.name == vector["header"]["opcode"]
        assert decoded.meta.hex() == vector["meta_hex"]
        assert decoded.payload.hex() == vector["payload_hex"]
        assert encode_frame(decoded.header, decoded.meta, decoded.payload, secret) == frame
    else:
        with pytest.raises(MemkvError) as info:
            decode_frame(frame, secret, limits)
        assert info.value.code is ErrorCode[vector["expect"]]


@req("MKV-WIRE-005")
def test_newer_major_is_unsupported_version() -> None:
    raw = bytearray(Header(Opcode.PING, 1).pack())
    raw[4] = 2
    with pytest.raises(UnsupportedVersion, match=r"speaks 1\.2"):
        parse_header(raw)


@req("MKV-WIRE-007")
def test_pre_auth_limits_refuse_big_meta_before_allocating() -> None:
    header = Header(Opcode.HELLO, 0, meta_len=1 << 30)
    with pytest.raises(LimitExceeded):
        parse_header(header.pack(), PRE_AUTH_LIMITS)
    with pytest.raises(ProtocolError):
        parse_header(Header(Opcode.HELLO, 0, payload_len=1).pack(), PRE_AUTH_LIMITS)


@req("MKV-WIRE-006")
def test_meta_round_trip_put_items_and_results() -> None:
    meta = BlockMeta(dtype="fp8", token_count=32, user=b"x" * 10)
    raw = msg.encode_meta({"a": 1}, msg.pack_put_item(b"k" * 16, 100, 42, meta.encode()), 1)
    reader = msg.MetaReader(raw, 4)
    assert reader.args == {"a": 1}
    [(key, length, checksum, decoded)] = reader.put_items(msg.Limits())
    reader.finish()
    assert (key, length, checksum, decoded) == (b"k" * 16, 100, 42, meta)
    from memkv.transport import ItemResult

    results = [ItemResult(), ItemResult(ErrorCode.KEY_CONFLICT, "differs")]
    reader = msg.MetaReader(msg.encode_meta({}, msg.pack_results(results), 2), 4)
    assert reader.results() == results


@req("MKV-WIRE-006", "MKV-WIRE-007")
@pytest.mark.parametrize("raw", [
    b"", b"\x05\x00\x00\x00{}", struct.pack("<I", 2) + b"[]" + struct.pack("<I", 0),
    struct.pack("<I", 3) + b"{x}" + struct.pack("<I", 0), struct.pack("<I", 2) + b"{}" + struct.pack("<I", 1),
    struct.pack("<I", 11) + b'{"a": NaN }' + struct.pack("<I", 0),
])
def test_malformed_meta_is_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        reader = msg.MetaReader(raw, 4)
        reader.keys()


@req("MKV-WIRE-007")
def test_item_count_over_limit() -> None:
    with pytest.raises(LimitExceeded):
        msg.MetaReader(msg.encode_meta({}, b"", 5), 4)


def test_wrong_argument_type_is_invalid_argument() -> None:
    reader = msg.MetaReader(msg.encode_meta({"ttl_s": "x", "flag": True}), 0)
    with pytest.raises(InvalidArgument):
        reader.arg("ttl_s", float)
    with pytest.raises(InvalidArgument):
        reader.arg("flag", int)
    assert msg.MetaReader(msg.encode_meta({"ttl_s": 3}), 0).arg("ttl_s", float) == 3


def test_vector_secret_is_fixed() -> None:
    assert bytes(range(32)) == SECRET
