"""spec/operations.yaml, spec/wire.md section 9, the codec, the vectors and the server agree.

The schema is the one place where an opcode's arguments are spelt; these tests fail when the
text, the opcode table, a record layout, a vector or an answer of the reference server departs
from it (MKV-WIRE-006, MKV-WIRE-011, MKV-WIRE-016).
"""

from __future__ import annotations

import ast
import copy
import hashlib
import hmac
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memkv.blocks import BlockMeta
from memkv.checksum import payload_checksum
from memkv.conformance import opschema as schema
from memkv.credentials import parse_credential
from memkv.errors import ErrorCode, MemkvError
from memkv.server.service import MemkvServer
from memkv.server.testing import hello_bytes, in_process_server, read_frame, recv_exact, write_keys_file
from memkv.transport import SPEC_VERSION
from memkv.wire import messages as msg
from memkv.wire import nixl_leases as leases
from memkv.wire import records
from memkv.wire.frames import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    Header,
    WireLimits,
    connection_key,
    decode_frame,
    encode_frame,
    verify,
)
from memkv.wire.opcodes import PAYLOAD_REQUESTS, PAYLOAD_RESPONSES, REQUIRED_ROLE, SINCE_MINOR, Opcode

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = schema.load(ROOT / "spec" / "operations.yaml")
FRAMES = json.loads((ROOT / "spec" / "vectors" / "frames.json").read_text(encoding="utf-8"))
BIG = WireLimits(max_meta=1 << 20, max_payload=1 << 20, max_items=256)
req = pytest.mark.requirement


# ---- the schema, the text and the codec ----------------------------------------------------------
@req("MKV-WIRE-006")
def test_wire_md_section_9_is_the_schema() -> None:
    text = (ROOT / "spec" / "wire.md").read_text(encoding="utf-8")
    assert schema.generated_block(text) == schema.render_tables(SCHEMA)


def test_schema_version_and_entry_fields() -> None:
    assert str(SCHEMA["spec_version"]) == SPEC_VERSION
    for entry in SCHEMA["opcodes"]:
        assert set(entry) - {"since"} == {"name", "code", "role", "request", "answer", "errors"}, entry["name"]
        assert str(entry.get("since", "1.1")) <= SPEC_VERSION, entry["name"]
        for side in ("request", "answer"):
            part = entry[side]
            if part is None:
                continue
            assert set(part) - {"open"} == {"args", "items", "payload"}, (entry["name"], side)
            assert part["items"] == "none" or part["items"] in SCHEMA["records"], (entry["name"], side)
            for arg in part["args"]:
                assert set(arg) == {"name", "type", "required", "bounds", "meaning"}, (entry["name"], arg)
                assert arg["type"].removesuffix("|null") in SCHEMA["types"], (entry["name"], arg)
        for error in [*entry["errors"], *SCHEMA["common_errors"]]:
            assert error.removeprefix("item: ") in ErrorCode.__members__, (entry["name"], error)


@req("MKV-WIRE-004", "MKV-WIRE-045")
def test_schema_opcodes_roles_and_payloads_are_the_codec_s() -> None:
    by_name = {e["name"]: e for e in SCHEMA["opcodes"]}
    assert {name: e["code"] for name, e in by_name.items()} == {op.name: int(op) for op in Opcode}
    roles = {name: e["role"] for name, e in by_name.items() if e["role"] != "none"}
    assert roles == {op.name: role.name.lower() for op, role in REQUIRED_ROLE.items()}
    assert {n for n, e in by_name.items() if e["request"] and e["request"]["payload"]} == {
        op.name for op in PAYLOAD_REQUESTS}
    assert {n for n, e in by_name.items() if e["answer"]["payload"]} == {op.name for op in PAYLOAD_RESPONSES}
    # the opcodes a client keeps from an older server (MKV-WIRE-045) are the ones the schema dates
    assert {n: e["since"] for n, e in by_name.items() if "since" in e} == {
        op.name: f"1.{minor}" for op, minor in SINCE_MINOR.items()}


@req("MKV-WIRE-006")
def test_record_layouts_are_the_codec_s() -> None:
    size = lambda record: schema.record_fixed_size(SCHEMA, record)  # noqa: E731
    assert size("key") == 16
    assert size("put_item") == len(msg.pack_put_item(bytes(16), 1, 2, b""))
    assert size("get_item") == len(msg.pack_get_item(bytes(16), 1))
    assert size("result") == len(msg.pack_results([msg.ItemResult(ErrorCode.NOT_FOUND, "")]))
    assert size("get_result") == len(msg.pack_get_results([msg.GetResult(ErrorCode.NOT_FOUND, "")]))
    assert size("stat_result") == len(msg.pack_stat_results([None]))
    assert size("flag") == len(msg.pack_flags([True]))
    assert size("blob") == len(msg.pack_blob(b""))
    assert size("nixl_get_item") == len(msg.pack_nixl_desc(bytes(16), 1, 2, 3, 0))
    assert size("nixl_put_item") == len(msg.pack_nixl_put_item(bytes(16), 1, 2, 3, 0, 4, b""))
    granted = leases.pack_alloc_answer([msg.ItemResult(ErrorCode.OK, "")], [leases.Grant(1, 2, 3, 0, 4, 5)])
    assert size("alloc_result") == len(granted)
    assert size("commit_item") == len(leases.pack_commit_item(1, leases.STORE))
    assert size("credit_item") == len(leases.pack_credit_item(1))
    assert size("store_item") == len(leases.pack_store_item(1, 1, bytes(16), 1, 2, b""))


def test_check_args_finds_each_kind_of_departure() -> None:
    good = {"prefix_len": 1, "lease_id": None, "lease_expires_at": None}
    assert schema.check_args(SCHEMA, "LOOKUP", "answer", good) == []
    assert len(schema.check_args(SCHEMA, "LOOKUP", "answer", {"prefix_len": 1})) == 2
    assert schema.check_args(SCHEMA, "LOOKUP", "answer", good | {"prefix_len": True}) != []
    assert schema.check_args(SCHEMA, "LOOKUP", "answer", good | {"extra": 1}) != []
    assert schema.check_args(SCHEMA, "INVALIDATE_PREFIX", "request", {"key": "zz" * 16}) != []


# ---- vectors ------------------------------------------------------------------------------------------
@req("MKV-WIRE-011")
def test_handshake_vector_follows_the_byte_exact_derivation() -> None:
    """Rebuilt from the text of MKV-WIRE-011 with hmac and hashlib only."""
    hs = FRAMES["handshake"]
    secret = bytes.fromhex(FRAMES["secrets"]["vector"])
    for direction, name in ((b"c2s", "c2s"), (b"s2c", "s2c")):
        material = (b"memkv-wire-1|" + direction + b"|" + bytes.fromhex(hs["client_nonce"]) + b"|"
                    + bytes.fromhex(hs["server_nonce"]) + b"|" + hs["namespace"].encode() + b"|"
                    + hs["key_id"].encode())
        assert material.hex() == hs[f"material_{name}_hex"]
        assert hmac.digest(secret, material, hashlib.sha256).hex() == hs[f"key_{name}"]
    assert 0x7C in bytes.fromhex(hs["client_nonce"])  # the separator byte inside a raw nonce


@req("MKV-WIRE-006", "MKV-WIRE-011", "MKV-WIRE-016")
@pytest.mark.parametrize("vector", FRAMES["operations"], ids=lambda v: v["opcode"])
def test_operation_vector(vector: dict[str, Any]) -> None:
    keys = {"secret": bytes.fromhex(FRAMES["secrets"]["vector"]),
            "key_c2s": bytes.fromhex(FRAMES["handshake"]["key_c2s"]),
            "key_s2c": bytes.fromhex(FRAMES["handshake"]["key_s2c"])}
    entry = schema.opcode_entry(SCHEMA, vector["opcode"])
    assert entry["code"] == vector["code"]
    assert (entry["request"] is None) == ("request" not in vector)
    for side in ("request", "answer"):
        if side not in vector:
            continue
        frame = decode_frame(bytes.fromhex(vector[side]["frame_hex"]), keys[vector[side]["signed_with"]], BIG)
        assert frame.header.opcode.name == vector["opcode"] and frame.header.is_response == (side == "answer")
        reader = msg.MetaReader(frame.meta, BIG.max_items)
        assert reader.args == vector[side]["args"]
        assert reader.count == vector[side]["item_count"]
        assert schema.check_args(SCHEMA, vector["opcode"], side, reader.args) == []
        assert bool(frame.payload) == entry[side]["payload"]
        assert (reader.count > 0) == (entry[side]["items"] != "none")


def test_every_opcode_has_a_vector() -> None:
    assert [v["opcode"] for v in FRAMES["operations"]] == [e["name"] for e in SCHEMA["opcodes"]]


# ---- the reference server answers as the schema says ------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MemkvServer, dict[str, str]]]:
    root = tmp_path_factory.mktemp("schema")
    creds = write_keys_file(root / "keys.yaml", {"team-a": [("a-admin", "admin")]})
    # NIXL off: no NIXL agent in the test process (an agent may crash the interpreter at exit, issue 8)
    srv = in_process_server(str(root / "data"), str(root / "keys.yaml"), admin_listen="off", nixl="off")
    yield srv, creds
    srv.shutdown()


class _Peer:
    def __init__(self, srv: MemkvServer, cred: str) -> None:
        self.sock = socket.create_connection(srv.address, timeout=10)
        frame, nonce = hello_bytes("team-a", cred)
        self.sock.sendall(frame)
        header, meta = read_frame(self.sock)
        self.hello = msg.MetaReader(meta, 0).args
        key_id, secret = parse_credential(cred)
        server_nonce = bytes.fromhex(self.hello["server_nonce"])
        self.tx = connection_key(secret, CLIENT_TO_SERVER, nonce, server_nonce, "team-a", key_id)
        self.rx = connection_key(secret, SERVER_TO_CLIENT, nonce, server_nonce, "team-a", key_id)
        verify(self.rx, header, meta)
        self.request_id = 0

    def call(self, op: Opcode, args: dict[str, Any] | None = None, items: bytes = b"", count: int = 0,
             payload: bytes = b"") -> tuple[Opcode, msg.MetaReader, bytes]:
        self.request_id += 1
        self.sock.sendall(encode_frame(Header(op, self.request_id), msg.encode_meta(args or {}, items, count),
                                       payload, self.tx))
        header, meta = read_frame(self.sock)
        verify(self.rx, header, meta)
        body = recv_exact(self.sock, header.payload_len) if header.payload_len else b""
        return header.opcode, msg.MetaReader(meta, BIG.max_items), body


@req("MKV-WIRE-006", "MKV-WIRE-042", "MKV-VER-001")
def test_reference_server_answers_follow_the_schema(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = server
    peer = _Peer(srv, creds["a-admin"])
    problems = schema.check_args(SCHEMA, "HELLO", "answer", peer.hello)
    assert peer.hello["spec_version"] == SPEC_VERSION and peer.hello["idle_timeout_s"] > 0
    k1, k2 = os.urandom(16), os.urandom(16)
    data = b"schema check payload"
    keys = msg.pack_keys([k1, k2])
    answers: dict[str, dict[str, Any]] = {}

    def call(op: Opcode, args: dict[str, Any] | None = None, items: bytes = b"", count: int = 0,
             payload: bytes = b"") -> msg.MetaReader:
        opcode, reader, _ = peer.call(op, args, items, count, payload)
        assert opcode is op, (op, reader.args)
        answers[op.name] = reader.args
        return reader

    put = call(Opcode.PUT, {}, msg.pack_put_item(k1, len(data), payload_checksum(data), BlockMeta().encode()), 1, data)
    assert put.results()[0].ok
    call(Opcode.GET, {}, msg.pack_get_item(k1, 4096) + msg.pack_get_item(k2, 4096), 2)
    call(Opcode.STAT, {}, keys, 2)
    call(Opcode.CHILDREN, {"after": None}, keys, 2)
    call(Opcode.EXISTS, {}, keys, 2)
    lease = call(Opcode.LOOKUP, {"lease_ms": 5000}, keys, 2).args["lease_id"]
    call(Opcode.RELEASE_LEASE, {"lease_id": lease})
    sid = call(Opcode.SESSION_OPEN, {"ttl_s": 60.0}, msg.pack_keys([k1]), 1).args["session_id"]
    call(Opcode.SESSION_APPEND, {"session_id": sid}, msg.pack_keys([k1]), 1)
    call(Opcode.SESSION_INFO, {"session_id": sid})
    call(Opcode.SESSION_SUSPEND, {"session_id": sid, "pause_ttl_s": 60.0})
    call(Opcode.SESSION_RESUME, {"session_id": sid})
    fork = call(Opcode.SESSION_FORK, {"session_id": sid, "prefix_len": 1}).args["session_id"]
    call(Opcode.SESSION_CLOSE, {"session_id": fork})
    call(Opcode.INVALIDATE_SESSION, {"session_id": sid})
    call(Opcode.INVALIDATE_KEYS, {}, keys, 2)
    call(Opcode.INVALIDATE_PREFIX, {"key": k1.hex()})
    call(Opcode.INVALIDATE_MODEL, {"fingerprint": k2.hex()})
    call(Opcode.DELETE, {}, keys, 2)
    call(Opcode.INVALIDATE_NAMESPACE)
    call(Opcode.CAPABILITIES)
    call(Opcode.STATS)
    call(Opcode.PING)
    opcode, error, _ = peer.call(Opcode.NIXL_HELLO, {"agent": "x", "epoch": 0}, msg.pack_blob(b"md"), 1)
    assert opcode is Opcode.ERROR and error.args["code"] == ErrorCode.UNSUPPORTED  # a server without NIXL
    answers["ERROR"] = error.args
    call(Opcode.GOODBYE)
    peer.sock.close()
    for name, args in answers.items():
        problems += schema.check_args(SCHEMA, name, "answer", args)
    assert problems == []
    nixl_only = {"NIXL_HELLO", "NIXL_PUT", "NIXL_GET", "NIXL_ALLOC", "NIXL_COMMIT", "NIXL_SERVER_AGENT",
                 "NIXL_CREDIT", "NIXL_STORE"}
    expected = {e["name"] for e in SCHEMA["opcodes"]} - {"HELLO"} - nixl_only
    assert set(answers) == expected


# ---- the server and the clients spell arguments only through the records of memkv.wire.records ------
def _records_named(node: ast.AST) -> set[str]:
    """Names X of every `rec.X` inside `node`."""
    return {n.attr for n in ast.walk(node)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "rec"}


def _literal_arg_reads(node: ast.AST) -> list[str]:
    """Argument names read by hand (`.arg("x", ...)`, `.hex_arg("x", ...)`) inside `node`."""
    return [str(n.args[0].value) for n in ast.walk(node)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in ("arg", "hex_arg")
            and n.args and isinstance(n.args[0], ast.Constant)]


def _handler_table(tree: ast.AST) -> dict[str, str]:
    """Opcode name -> handler method name, from the dict literal `{Opcode.X: self._x, ...}`."""
    table: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (isinstance(key, ast.Attribute) and isinstance(key.value, ast.Name) and key.value.id == "Opcode"
                        and isinstance(value, ast.Attribute)):
                    table[key.attr] = value.attr
    return table


REQUEST_RECORDS = {cls.__name__ for cls in records.REQUEST_ARGS.values()}


@req("MKV-WIRE-006")
def test_server_handlers_decode_their_opcode_s_record() -> None:
    tree = ast.parse((ROOT / "memkv" / "server" / "connection.py").read_text(encoding="utf-8"))
    methods = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    table = _handler_table(tree)
    assert len(table) >= 20
    for opcode, method in table.items():
        body = methods[method]
        called = {n.func.attr for n in ast.walk(body) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
        used = _records_named(body).union(*(_records_named(methods[c]) for c in called if c in methods))
        expected = records.REQUEST_ARGS.get(Opcode[opcode])
        assert used & REQUEST_RECORDS == ({expected.__name__} if expected else set()), (opcode, used)
        assert _literal_arg_reads(body) == [], opcode


@req("MKV-WIRE-006")
def test_clients_send_their_opcode_s_record() -> None:
    sent: dict[str, set[str]] = {}
    for path in (ROOT / "memkv" / "backends" / "tcp.py", ROOT / "memkv" / "backends" / "nixl.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("request", "_request", "_call", "_session", "_count")):
                continue
            first, second = (node.args + [ast.Constant(None)] * 2)[:2]
            if not (isinstance(first, ast.Attribute) and isinstance(first.value, ast.Name)
                    and first.value.id == "Opcode"):
                continue
            if isinstance(second, ast.Call):
                sent.setdefault(first.attr, set()).update(_records_named(second.func))
            elif isinstance(second, ast.Constant) and second.value is None:
                sent.setdefault(first.attr, set())
            else:
                pytest.fail(f"{path.name}: {first.attr} is sent with {ast.unparse(second)}, not a record")
    assert len(sent) >= 15
    for opcode, names in sent.items():
        expected = records.REQUEST_ARGS.get(Opcode[opcode])
        assert names == ({expected.__name__} if expected else set()), (opcode, names)


def test_a_record_that_differs_from_the_schema_fails() -> None:
    assert records.schema_problems(SCHEMA) == []
    changed = copy.deepcopy(SCHEMA)
    lookup = next(e for e in changed["opcodes"] if e["name"] == "LOOKUP")
    lookup["request"]["args"].append({"name": "lease_scope", "type": "string", "required": False})
    fork = next(e for e in changed["opcodes"] if e["name"] == "SESSION_FORK")
    fork["request"]["args"][1]["type"] = "int"  # prefix_len no longer admits null
    count = next(e for e in changed["opcodes"] if e["name"] == "INVALIDATE_MODEL")
    count["answer"]["args"] = [{"name": "removed", "type": "int", "required": True}]
    problems = records.schema_problems(changed)
    assert [p.split(":")[0].split()[0] for p in problems] == ["LOOKUP", "SESSION_FORK", "INVALIDATE_MODEL"]
    with pytest.raises(records.SchemaMismatch, match="lease_scope"):
        records.check_schema(changed)


def test_a_sender_cannot_pass_another_opcode_s_record() -> None:
    records.check_request(Opcode.LOOKUP, records.LookupArgs(5))
    records.check_request(Opcode.PING, None)
    with pytest.raises(TypeError, match="SESSION_CLOSE takes SessionArgs"):
        records.check_request(Opcode.SESSION_CLOSE, records.LookupArgs(5))
    with pytest.raises(TypeError):
        records.check_request(Opcode.LOOKUP, None)
    with pytest.raises(TypeError):
        records.check_request(Opcode.PING, records.SessionArgs("s"))


def test_records_round_trip_through_frame_metadata() -> None:
    sent = records.SessionForkArgs("s-1", None, 2.5)
    reader = msg.MetaReader(msg.encode_meta(records.encode(sent)), 0)
    assert records.decode(reader, records.SessionForkArgs) == sent
    fingerprint = records.Hex16(bytes(range(16)))
    reader = msg.MetaReader(msg.encode_meta(records.encode(records.InvalidateModelArgs(fingerprint))), 0)
    assert reader.args == {"fingerprint": bytes(range(16)).hex()}
    assert records.decode(reader, records.InvalidateModelArgs).fingerprint == fingerprint
    for bad in ({"session_id": 7}, {}, {"session_id": "s", "prefix_len": True}):
        with pytest.raises(MemkvError) as info:
            records.decode(msg.MetaReader(msg.encode_meta(bad), 0), records.SessionForkArgs)
        assert info.value.code is ErrorCode.INVALID_ARGUMENT
