"""Profile wire: the memkv wire protocol checked over the target's socket (spec/wire.md sections 1-6, 9).

The peer (memkv/conformance/wire_peer.py) is written from the spec and does not import memkv.wire; the
answers are checked against spec/operations.yaml. As in h2spec, every check sends what the spec
allows or forbids and looks at the exact answer: the error code, whether the connection closed,
and that the target still serves other connections afterwards. Needs `Target.wire_address` and
`Target.credential`; the timeout and connection-limit checks need `Target.launch`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import xxhash

from memkv.conformance import opschema
from memkv.conformance.requirements import SPEC_DIR
from memkv.conformance.support import Context, check, fail
from memkv.conformance.wire_peer import (
    DEFAULT_BLOCK_META,
    HEADER_SIZE,
    OPCODES,
    RESPONSE,
    Frame,
    Peer,
    header,
    metadata,
    parse_secret,
    sign,
)

SCHEMA = opschema.load(SPEC_DIR / "operations.yaml")
EMPTY_META = metadata({})


def _address(memkv: Context) -> tuple[str, int]:
    hook = getattr(memkv.target, "wire_address", None)
    address = hook() if callable(hook) else None
    if address is None:
        pytest.skip("the target offers no wire-protocol address (Target.wire_address)")
    return address  # type: ignore[no-any-return]


def _cred(memkv: Context, namespace: str, role: str = "write") -> str | None:
    hook = getattr(memkv.target, "credential", None)
    return hook(namespace, role) if callable(hook) else None


@contextlib.contextmanager
def _open(memkv: Context, role: str = "write", namespace: str | None = None,
          address: tuple[str, int] | None = None, minor: int = 1) -> Iterator[Peer]:
    """A connection after a successful HELLO (signed when the target gives credentials)."""
    ns = namespace or memkv.namespace("wire")
    with Peer(address or _address(memkv), minor=minor) as peer:
        answer = peer.hello(ns, _cred(memkv, ns, role))
        if answer.error:
            fail("MKV-WIRE-008", "a valid HELLO is accepted", "HELLO answer", f"{answer.error}: {answer.args}")
        yield peer


def _refused(requirement: str, peer: Peer, what: str, expected: tuple[str, ...], closes: bool) -> Frame:
    try:
        answer = peer.read()
    except (ConnectionError, OSError):
        fail(requirement, f"{what}: an error frame is sent before closing", " or ".join(expected), "no answer")
        raise
    check(requirement, answer.error in expected, what, " or ".join(expected), answer.error or "accepted")
    if closes:
        check(requirement, peer.closed(), f"{what}: the connection is closed after the error", "closed", "open")
    return answer


def _still_serves(memkv: Context, requirement: str, what: str) -> None:
    with _open(memkv) as other:
        check(requirement, other.call("PING").error == "", f"after {what}, a new connection is served", "PING", "error")


def _limits(peer: Peer) -> dict[str, int]:
    """The limits of the HELLO answer; takes the next request id for a hand-built frame."""
    assert peer.hello_answer is not None
    limits = peer.hello_answer.args.get("limits", {})
    peer.request_id += 1
    return {name: int(limits.get(name, 0)) for name in ("max_meta", "max_payload", "max_items")}


def _put_item(key: bytes, data: bytes) -> bytes:
    meta = DEFAULT_BLOCK_META
    return key + struct.pack("<QQH", len(data), xxhash.xxh3_64_intdigest(data), len(meta)) + meta


# ---- frames and opcodes (MKV-WIRE-001..004, -016) -------------------------------------------------------

@pytest.mark.requirement("MKV-WIRE-001", "MKV-WIRE-002")
def test_answers_are_well_formed_frames(memkv: Context) -> None:
    with _open(memkv) as peer:
        peer.send(peer.frame("PING", request_id=41))
        answer = peer.read()
        magic, major, _minor, opcode, flags, request_id, meta_len, status, reserved, payload_len, _ = answer.fields
        check("MKV-WIRE-002", magic == b"MKVW" and major == 1, "magic MKVW and major version 1", "MKVW 1",
              f"{magic!r} {major}")
        check("MKV-WIRE-002", opcode == OPCODES["PING"] and flags == RESPONSE and request_id == 41,
              "the answer carries the request's opcode, the response flag and its request id", "PING, 1, 41",
              f"{opcode:#x}, {flags}, {request_id}")
        check("MKV-WIRE-002", reserved == 0 and status == 0 and payload_len == 0, "reserved, status and payload "
              "are zero in a PING answer", "0 0 0", f"{reserved} {status} {payload_len}")
        check("MKV-WIRE-001", len(answer.meta) == meta_len and answer.items[0] == 0, "the metadata is exactly "
              "meta_len bytes: arguments and an item count", meta_len, len(answer.meta))
        peer.sock.settimeout(0.3)
        with contextlib.suppress(TimeoutError, BlockingIOError):
            extra = peer.sock.recv(1)
            check("MKV-WIRE-001", not extra, "nothing follows the answer's declared lengths", "no bytes", extra)


@pytest.mark.requirement("MKV-WIRE-003", "MKV-WIRE-004", "MKV-WIRE-016", "MKV-WIRE-019")
def test_malformed_headers_are_protocol_errors_and_close(memkv: Context) -> None:
    ping = OPCODES["PING"]
    cases: dict[str, Callable[[int], bytes]] = {
        "bad magic": lambda rid: header(ping, rid, len(EMPTY_META), magic=b"XKVW"),
        "an unknown flag bit": lambda rid: header(ping, rid, len(EMPTY_META), flags=0x80),
        "a reserved field that is not zero": lambda rid: header(ping, rid, len(EMPTY_META), reserved=1),
        "an unknown opcode 0x6e": lambda rid: header(0x6E, rid, len(EMPTY_META))}
    for what, build in cases.items():
        with _open(memkv) as peer:
            peer.request_id += 1
            head = build(peer.request_id)
            peer.send(sign(peer.tx, head, EMPTY_META) + EMPTY_META)
            requirement = "MKV-WIRE-004" if "opcode" in what else "MKV-WIRE-003"
            _refused(requirement, peer, f"a frame with {what}", ("PROTOCOL_ERROR",), closes=True)
    _still_serves(memkv, "MKV-WIRE-019", "malformed frames")


@pytest.mark.requirement("MKV-WIRE-006", "MKV-WIRE-016", "MKV-WIRE-019")
def test_malformed_metadata_is_refused(memkv: Context) -> None:
    key = memkv.rng.randbytes(16)
    data = b"wire check payload"
    bad = {"arguments that are not JSON": struct.pack("<I", 3) + b"{x}" + struct.pack("<I", 0),
           "arguments with NaN": struct.pack("<I", 9) + b'{"a":NaN}' + struct.pack("<I", 0),
           "arguments that are a list": struct.pack("<I", 2) + b"[]" + struct.pack("<I", 0),
           "bytes after the items": EMPTY_META + b"\x00",
           "a truncated item table": metadata({}, b"\x00" * 7, 1)}
    for what, meta in bad.items():
        with _open(memkv) as peer:
            peer.request_id += 1
            peer.send(sign(peer.tx, header(OPCODES["STAT"], peer.request_id, len(meta)), meta) + meta)
            _refused("MKV-WIRE-006", peer, f"STAT with {what}", ("PROTOCOL_ERROR", "INVALID_ARGUMENT"), closes=False)
    with _open(memkv) as peer:
        item = _put_item(key, data)
        peer.send(peer.frame("PUT", {}, item, 1, data + b"x"))  # payload_len is not the sum of the lengths
        _refused("MKV-WIRE-006", peer, "a PUT whose payload is not the sum of its item lengths",
                 ("PROTOCOL_ERROR",), closes=True)
    with _open(memkv) as peer:
        peer.send(peer.frame("STAT", {}, b"", 0, b"xyz"))
        _refused("MKV-WIRE-006", peer, "a STAT with a payload", ("PROTOCOL_ERROR",), closes=True)
    with _open(memkv) as peer:
        check("MKV-WIRE-019", peer.call("EXISTS", {}, key, 1).items[1] == b"\x00", "nothing was stored by the "
              "refused PUT", "absent", "present")


# ---- set-up, versions and limits (MKV-WIRE-005, -007, -008, MKV-CONN-001, MKV-VER-002) -------------------------

@pytest.mark.requirement("MKV-WIRE-005", "MKV-CONN-001")
def test_hello_first_and_versions(memkv: Context) -> None:
    address = _address(memkv)
    ns = memkv.namespace("wire")
    cred = _cred(memkv, ns)
    with Peer(address) as peer:
        peer.send(peer.frame("PING", key=None))
        _refused("MKV-CONN-001", peer, "a first frame that is not HELLO", ("UNAUTHENTICATED",), closes=True)
    with Peer(address) as peer:
        frame, _ = peer.hello_frame(ns, None, None)
        peer.send(frame[:4] + b"\x02" + frame[5:])  # major version 2
        answer = _refused("MKV-WIRE-005", peer, "a HELLO of major version 2", ("UNSUPPORTED_VERSION",), closes=True)
        check("MKV-WIRE-005", "1." in str(answer.args.get("message", "")), "the refusal names the version spoken",
              "1.x", answer.args.get("message"))
    with Peer(address) as peer:
        answer = peer.hello(ns, cred)
        minor = answer.fields[2]
        check("MKV-WIRE-005", answer.error == "" and minor <= 1 and answer.args.get("version") == f"1.{minor}",
              "a HELLO of this minor version is answered with the version both speak", "1.<minor>",
              answer.args.get("version"))


@pytest.mark.requirement("MKV-WIRE-005", "MKV-VER-002")
def test_newer_minor_and_unknown_arguments_are_accepted(memkv: Context) -> None:
    ns = memkv.namespace("wire")
    cred = _cred(memkv, ns)
    with Peer(_address(memkv)) as peer:
        secret = None if cred is None else parse_secret(cred.split(":", 1)[1])
        frame, _ = peer.hello_frame(ns, None if cred is None else cred.split(":")[0], secret,
                                    added_in_a_later_minor={"x": 1})
        head = bytearray(frame[:HEADER_SIZE])
        head[5] = 9  # minor version 9
        meta = frame[HEADER_SIZE:]
        peer.send(sign(secret, bytes(head), meta) + meta)
        answer = peer.read()
        lower = answer.fields[2] < 9 and answer.args.get("version") == f"1.{answer.fields[2]}"
        check("MKV-WIRE-005", answer.error == "" and lower,
              "a newer minor version is accepted and answered with the lower minor", "HELLO answer",
              answer.error or answer.args.get("version"))
        check("MKV-VER-002", answer.error == "", "an unknown HELLO argument is ignored", "accepted", answer.error)
    with _open(memkv) as peer:
        check("MKV-VER-002", peer.call("PING", {"added_in_a_later_minor": True}).error == "",
              "an unknown request argument is ignored", "PING answer", "error")


@pytest.mark.requirement("MKV-WIRE-008")
def test_hello_answer_has_the_fields_of_the_schema(memkv: Context) -> None:
    with _open(memkv) as peer:
        assert peer.hello_answer is not None
        problems = opschema.check_args(SCHEMA, "HELLO", "answer", peer.hello_answer.args)
        check("MKV-WIRE-008", not problems, "the HELLO answer has the arguments of spec/operations.yaml", "none",
              problems)
        check("MKV-WIRE-008", len(bytes.fromhex(peer.hello_answer.args.get("server_nonce", ""))) == 16,
              "a 16-byte server nonce", 16, peer.hello_answer.args.get("server_nonce"))


@pytest.mark.requirement("MKV-WIRE-007", "MKV-WIRE-041")
def test_limits_are_checked_before_allocation(memkv: Context) -> None:
    address = _address(memkv)
    with Peer(address) as peer:
        peer.send(header(OPCODES["HELLO"], 0, 4097))  # before HELLO: at most 4096 bytes of metadata
        _refused("MKV-WIRE-007", peer, "a first frame announcing 4097 bytes of metadata", ("LIMIT_EXCEEDED",),
                 closes=True)
    with _open(memkv) as peer:
        limits = _limits(peer)
        peer.send(header(OPCODES["STAT"], peer.request_id, limits["max_meta"] + 1))
        _refused("MKV-WIRE-007", peer, "metadata over max_meta (announced only, never sent)", ("LIMIT_EXCEEDED",),
                 closes=True)
    with _open(memkv) as peer:
        limits = _limits(peer)
        meta = metadata({}, b"", limits["max_items"] + 1)
        peer.send(sign(peer.tx, header(OPCODES["PUT"], peer.request_id, len(meta), limits["max_payload"] + 1),
                       meta) + meta)
        _refused("MKV-WIRE-041", peer, "a PUT announcing more than max_payload bytes", ("LIMIT_EXCEEDED",),
                 closes=True)
    with _open(memkv) as peer:
        count = _limits(peer)["max_items"] + 1
        check("MKV-WIRE-041", count - 1 >= memkv.limits.max_batch, "max_items is at least the target's max_batch",
              f">= {memkv.limits.max_batch}", count - 1)
        answer = peer.call("EXISTS", {}, os.urandom(16) * count, count)
        check("MKV-WIRE-041", answer.error == "LIMIT_EXCEEDED", "a batch over max_items is refused whole",
              "LIMIT_EXCEEDED", answer.error or "answered")
    _still_serves(memkv, "MKV-WIRE-007", "oversized frames")


# ---- requests and errors (MKV-WIRE-009, -013, -040, MKV-CONN-001) ---------------------------------------------

@pytest.mark.requirement("MKV-WIRE-009")
def test_errors_are_error_frames_and_item_failures_are_statuses(memkv: Context) -> None:
    with _open(memkv) as peer:
        answer = peer.call("RELEASE_LEASE", {"lease_id": "memkv-cf-no-such-lease"})
        check("MKV-WIRE-009", answer.opcode == OPCODES["ERROR"] and answer.status == 11
              and answer.args.get("code") == 11 and answer.args.get("name") == "UNKNOWN_LEASE"
              and isinstance(answer.args.get("message"), str) and answer.request_id == peer.request_id,
              "an error is an ERROR frame with the request id, status and code, name, message",
              "ERROR 11 UNKNOWN_LEASE", f"{answer.opcode:#x} {answer.status} {answer.args}")
        problems = opschema.check_args(SCHEMA, "ERROR", "answer", answer.args)
        check("MKV-WIRE-009", not problems, "the ERROR arguments of spec/operations.yaml", "none", problems)
        key = os.urandom(16)
        answer = peer.call("GET", {}, key + struct.pack("<Q", 4096), 1)
        count, items = answer.items
        check("MKV-WIRE-009", answer.opcode == OPCODES["GET"] and count == 1 and items[:2] == b"\x01\x00",
              "a missing key of a GET batch is a per-item NOT_FOUND in a normal answer", "GET, item status 1",
              f"{answer.opcode:#x}, {items[:2].hex()}")
        check("MKV-WIRE-009", peer.call("PING").error == "", "the connection stays usable after an error", "PING",
              "error")


@pytest.mark.requirement("MKV-WIRE-013")
def test_pipelined_requests_are_answered_in_order(memkv: Context) -> None:
    with _open(memkv) as peer:
        ids = []
        burst = b""
        for i in range(32):
            burst += peer.frame("PING" if i % 2 else "STATS")
            ids.append(peer.request_id)
        peer.send(burst)
        got = [peer.read() for _ in ids]
        check("MKV-WIRE-013", [a.request_id for a in got] == ids, "32 requests in flight are answered once each, "
              "in request order", ids[:5], [a.request_id for a in got][:5])
        check("MKV-WIRE-013", all(a.verifies(peer.rx) and a.error == "" for a in got), "every pipelined answer "
              "verifies", "all", "not all")


@pytest.mark.requirement("MKV-WIRE-040", "MKV-CONN-001")
def test_order_of_checks_and_goodbye(memkv: Context) -> None:
    reader_cred = _cred(memkv, "x", "read")
    if reader_cred is not None:
        ns = memkv.namespace("wire")
        with Peer(_address(memkv)) as peer:
            peer.hello(ns, _cred(memkv, ns, "read"))
            peer.send(peer.frame("PUT", {}, b"\x00" * 5, 3))
            _refused("MKV-WIRE-040", peer, "a reader's PUT with a broken item table: the role comes before the "
                     "arguments", ("PERMISSION_DENIED",), closes=False)
            peer.send(peer.frame("PUT", {}, b"", 0, request_id=1))
            _refused("MKV-WIRE-040", peer, "a replayed request id on a reader's PUT: the request id comes before "
                     "the role", ("UNAUTHENTICATED",), closes=True)
    with _open(memkv) as peer:
        answer = peer.call(0x12, {"session_id": "memkv-cf-none", "pause_ttl_s": -1})
        check("MKV-WIRE-040", answer.error == "INVALID_ARGUMENT", "arguments come before the operation "
              "(a bad pause_ttl_s on an unknown session)", "INVALID_ARGUMENT", answer.error or "accepted")
        check("MKV-CONN-001", peer.call("GOODBYE").opcode == OPCODES["GOODBYE"], "GOODBYE is answered", "GOODBYE",
              "other")
        check("MKV-CONN-001", peer.closed(), "nothing follows GOODBYE: the server closes", "closed", "open")


# ---- server behaviour (MKV-WIRE-017, -018, -042) ---------------------------------------------------------------

@pytest.fixture
def strict_server(memkv: Context) -> Iterator[Any]:
    """A server of the implementation with 1 s frame timeout, 2 s idle timeout and 70 connections."""
    hook = getattr(memkv.target, "launch", None)
    launched = hook(None, extra_args=["--frame-timeout", "1", "--idle-timeout", "2", "--max-connections", "70"]) \
        if callable(hook) else None
    if launched is None or not launched.started:
        pytest.skip("the target cannot start a server with other timeouts (Target.launch)")
    yield launched.target
    launched.target.close()


@pytest.mark.requirement("MKV-WIRE-017")
def test_many_connections_and_a_slow_client(memkv: Context, strict_server: Any) -> None:
    address = strict_server.wire_address()
    ns = memkv.namespace("wire")
    cred = strict_server.credential(ns, "write")
    slow = socket.create_connection(address)
    slow.sendall(header(OPCODES["HELLO"], 0, 100)[:20])  # half a header, then nothing
    peers: list[Peer] = []
    try:
        for _ in range(64):
            peer = Peer(address)
            peers.append(peer)
            peer.hello(ns, cred)
        started = time.monotonic()
        answers = [p.call("PING").error for p in peers]
        check("MKV-WIRE-017", answers == [""] * 64 and time.monotonic() - started < 5, "64 connections are served "
              "at once while a slow client holds a partial frame", "64 PINGs", answers.count(""))
        extra = [Peer(address) for _ in range(6)]
        peers += extra
        over = Peer(address)
        peers.append(over)
        answer = over.read()
        check("MKV-WIRE-017", answer.error == "UNAVAILABLE" and over.closed(), "a connection over the limit gets "
              "UNAVAILABLE and is closed", "UNAVAILABLE", answer.error or "accepted")
    finally:
        slow.close()
        for peer in peers:
            peer.close()


@pytest.mark.requirement("MKV-WIRE-018", "MKV-WIRE-042")
def test_timeouts_and_keep_alive(memkv: Context, strict_server: Any) -> None:
    address = strict_server.wire_address()
    ns = memkv.namespace("wire")
    cred = strict_server.credential(ns, "write")
    with Peer(address) as peer:
        peer.hello(ns, cred)
        peer.send(peer.frame("PING")[:30])  # a frame that never completes
        _refused("MKV-WIRE-018", peer, "a frame not completed within the frame timeout", ("TIMEOUT",), closes=True)
    with Peer(address) as peer:
        answer = peer.hello(ns, cred)
        idle = answer.args.get("idle_timeout_s")
        check("MKV-WIRE-042", idle == 2, "the HELLO answer announces the idle timeout", 2, idle)
        stop = time.monotonic() + 4
        while time.monotonic() < stop:
            check("MKV-WIRE-042", peer.call("PING").error == "", "PING keeps a connection alive past the idle "
                  "timeout", "PING answered", "closed")
            time.sleep(0.5)
    with Peer(address) as peer:
        peer.hello(ns, cred)
        check("MKV-WIRE-018", peer.closed(wait=8), "an idle connection is closed after the idle timeout", "closed",
              "open")


@pytest.mark.requirement("MKV-WIRE-020")
def test_sigterm_drains_and_exits_cleanly(memkv: Context) -> None:
    hook = getattr(memkv.target, "launch", None)
    launched = hook(None) if callable(hook) else None
    if launched is None or not launched.started or not callable(getattr(launched.target, "send_sigterm", None)):
        pytest.skip("the target cannot start and signal a server of the implementation (Target.launch)")
    target = launched.target
    try:
        address = target.wire_address()
        ns = memkv.namespace("wire")
        cred = target.credential(ns, "write")
        key, data = os.urandom(16), b"written before SIGTERM"
        with Peer(address) as busy, Peer(address) as idle:
            busy.hello(ns, cred)
            idle.hello(ns, cred)
            stored = busy.call("PUT", {}, _put_item(key, data), 1, data)
            check("MKV-WIRE-020", stored.error == "" and stored.items[1][:2] == b"\x00\x00", "a put before SIGTERM",
                  "OK", stored.error or stored.items[1][:2].hex())
            proc = target.send_sigterm()
            refused = _refuses_connections(address, ns, cred, within_s=10.0)
            check("MKV-WIRE-020", refused, "after SIGTERM the server stops accepting connections", "refused",
                  "a HELLO answered 10 s after SIGTERM")
            try:
                answer = idle.call("PING")  # the signal has been handled: new connections are refused
                check("MKV-WIRE-020", answer.error == "UNAVAILABLE", "a request after SIGTERM gets UNAVAILABLE "
                      "(or the connection is closed)", "UNAVAILABLE", answer.error or "answered")
            except (ConnectionError, OSError):
                pass  # closed while draining: allowed
            try:
                status = proc.wait(30)
            except Exception:
                proc.kill()
                fail("MKV-WIRE-020", "the server exits after SIGTERM", "exit 0", "still running after 30 s")
            check("MKV-WIRE-020", status == 0, "the server exits with status 0 after SIGTERM", 0, status)
    finally:
        target.close()


def _refuses_connections(address: tuple[str, int], namespace: str, cred: str | None, within_s: float) -> bool:
    """True once a new connection gets no HELLO answer (refused, closed or UNAVAILABLE) within `within_s`."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with Peer(address, timeout=2) as late:
                if late.hello(namespace, cred).error:
                    return True
        except (ConnectionError, OSError):
            return True
        time.sleep(0.1)
    return False


# ---- CHILDREN (spec 1.2, MKV-WIRE-044) ---------------------------------------------------------------

def _child_of(parent: bytes) -> bytes:
    """Block metadata of section 3 with every field at its default but `parent`."""
    return DEFAULT_BLOCK_META[:-16] + parent


@pytest.mark.requirement("MKV-WIRE-044")
def test_children_are_paged_in_key_order(memkv: Context) -> None:
    with _open(memkv, minor=2) as peer:
        assert peer.hello_answer is not None
        if peer.hello_answer.args.get("version") != "1.2":
            pytest.skip(f"the target speaks wire {peer.hello_answer.args.get('version')}; CHILDREN is 1.2")
        max_items = _limits(peer)["max_items"]
        absent_parent, other_parent = memkv.key(), memkv.key()
        children = sorted(memkv.key() for _ in range(max_items + 3))  # one full page and 3 more
        grandchild, stranger = memkv.key(), memkv.key()
        blocks = [(k, absent_parent) for k in children] + [(grandchild, children[0]), (stranger, other_parent)]
        for start in range(0, len(blocks), 64):  # small PUT batches: within any max_batch
            part = blocks[start:start + 64]
            items = b"".join(key + struct.pack("<QQH", 1, xxhash.xxh3_64_intdigest(b"c"), len(_child_of(p)))
                             + _child_of(p) for key, p in part)
            put = peer.call("PUT", {}, items, len(part), b"c" * len(part))
            check("MKV-WIRE-044", put.error == "", "the blocks of the check are stored", "PUT answer", put.error)
        first = peer.call("CHILDREN", {}, absent_parent, 1)
        count, raw = first.items
        page = [raw[i:i + 16] for i in range(0, 16 * count, 16)]
        check("MKV-WIRE-044", page == children[:max_items], "a full first page: max_items children of a parent "
              "that is not stored, in ascending key order", f"{max_items} keys in order", f"{count} keys")
        check("MKV-WIRE-044", first.args.get("next") == children[max_items - 1].hex(), "next is the page's last key "
              "when more follow", children[max_items - 1].hex(), first.args.get("next"))
        second = peer.call("CHILDREN", {"after": first.args.get("next")}, absent_parent + children[0], 2)
        count, raw = second.items
        rest = [raw[i:i + 16] for i in range(0, 16 * count, 16)]
        expected = sorted(k for k in [*children[max_items:], grandchild] if k > children[max_items - 1])
        check("MKV-WIRE-044", rest == expected and second.args.get("next", "absent") is None,
              "the last page: the keys after `after` of every parent asked, and next null",
              f"{len(expected)} keys, next null", f"{count} keys, next {second.args.get('next')!r}")
        exists = peer.call("EXISTS", {}, b"".join(children[:3]), 3)
        check("MKV-WIRE-044", exists.items == (3, b"\x01\x01\x01"), "CHILDREN removes nothing", "present",
              exists.items)

