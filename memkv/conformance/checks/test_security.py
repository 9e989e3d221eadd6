"""Profile secure: keys, roles, signed frames, replays (MKV-NS-005..008, MKV-WIRE-010..012).

Keys and roles are checked through the target's client (`Target.second_client` with other
credentials); signatures and replays on raw frames built with memkv's codec (memkv/wire) as a
reference client, at `Target.wire_address()`. After every refusal the check verifies that
nothing stored changed. The start-up rules (an explicit, loud unauthenticated mode; keys files)
need `Target.launch` to start further servers of the implementation.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from memkv.blocks import BlockMeta
from memkv.checksum import payload_checksum
from memkv.conformance.support import Context, check, expect_code, fail, kept, launch_or_skip, payload, put_ok, read
from memkv.errors import ErrorCode, MemkvError
from memkv.transport import PutItem, Transport

E = ErrorCode


# ---- helpers -------------------------------------------------------------------------------------

def _address(memkv: Context) -> tuple[str, int]:
    hook = getattr(memkv.target, "wire_address", None)
    address = hook() if callable(hook) else None
    if address is None:
        pytest.skip("the target offers no wire-protocol address for raw frames (Target.wire_address)")
    return address  # type: ignore[no-any-return]


def _cred(memkv: Context, namespace: str, role: str) -> str:
    hook = getattr(memkv.target, "credential", None)
    cred = hook(namespace, role) if callable(hook) else None
    if cred is None:
        pytest.skip(f"the target offers no {role} key of a test namespace (Target.credential)")
    return str(cred)


def _client(memkv: Context, namespace: str, credentials: dict[str, str]) -> Transport:
    """A transport with other credentials; spec errors of the HELLO propagate."""
    hook = getattr(memkv.target, "second_client", None)
    made = hook(namespace, credentials) if callable(hook) else None
    if made is None:
        pytest.skip("the target offers no client with other credentials (Target.second_client)")
    memkv._open.append(made)
    return made  # type: ignore[no-any-return]


def _refused(memkv: Context, requirement: str, what: str, namespace: str, credentials: dict[str, str],
             allowed: list[ErrorCode]) -> None:
    """Opening a client with these credentials must fail with one of `allowed`."""
    try:
        transport = _client(memkv, namespace, credentials)
    except MemkvError as exc:
        check(requirement, exc.code in allowed, what, " or ".join(c.name for c in allowed), exc.code.name)
        return
    except pytest.skip.Exception:
        raise
    except Exception as exc:
        fail("MKV-ERR-001", f"{what}: raised a non-spec exception", allowed[0].name, f"{type(exc).__name__}: {exc}")
    try:
        transport.ping() if hasattr(transport, "ping") else transport.exists([bytes(16)])
    except MemkvError as exc:
        check(requirement, exc.code in allowed, what, " or ".join(c.name for c in allowed), exc.code.name)
        return
    fail(requirement, f"{what}: the connection was accepted", allowed[0].name, "a working connection")


def _other_secret(cred: str) -> str:
    key_id, _, secret = cred.partition(":")
    flipped = "".join("0123456789abcdef"[(int(c, 16) + 1) % 16] if c in "0123456789abcdef" else c
                      for c in secret.lower())
    return f"{key_id}:{flipped if not secret.startswith('base64:') else '00' * 32}"


@contextlib.contextmanager
def _raw(memkv: Context, namespace: str, role: str = "write") -> Iterator[tuple[socket.socket, bytes, bytes]]:
    from memkv.server.testing import open_raw_session

    address = _address(memkv)
    cred = _cred(memkv, namespace, role)
    try:
        sock, tx, rx = open_raw_session(address, namespace, cred)
    except (ConnectionError, OSError) as exc:
        fail("MKV-WIRE-011", "a correctly signed HELLO is accepted and its answer verifies", "HELLO answer",
             str(exc))
        raise
    except MemkvError as exc:
        fail("MKV-WIRE-011", "the HELLO answer is signed with the server-to-client key", "a valid MAC",
             f"{exc.code.name}: {exc.message}")
        raise
    try:
        yield sock, tx, rx
    finally:
        sock.close()


def _answer(sock: socket.socket) -> tuple[Any, bytes]:
    """The next frame (header, metadata); a payload, if any, is read and dropped."""
    from memkv.server.testing import read_frame, recv_exact

    sock.settimeout(10)
    header, meta = read_frame(sock)
    if header.payload_len:
        recv_exact(sock, header.payload_len)
    return header, meta


def _expect_error_and_close(requirement: str, sock: socket.socket, what: str,
                            allowed: tuple[ErrorCode, ...] = (E.UNAUTHENTICATED,)) -> None:
    from memkv.server.testing import closed
    from memkv.wire.opcodes import Opcode

    try:
        header, _ = _answer(sock)
    except (ConnectionError, OSError):
        fail(requirement, f"{what}: an error frame before the connection closes",
             " or ".join(c.name for c in allowed), "the connection closed without an answer")
        raise
    got = ErrorCode(header.status) if header.opcode is Opcode.ERROR else ErrorCode.OK
    check(requirement, header.opcode is Opcode.ERROR and got in allowed, what,
          "ERROR " + " or ".join(c.name for c in allowed), f"{header.opcode.name} status {got.name}")
    check(requirement, closed(sock), f"{what}: the connection is closed after the refusal", "closed", "open")


def _put_frame(tx: bytes | None, request_id: int, key: bytes, data: bytes, *, declared: bytes | None = None) -> bytes:
    """A signed PUT of one block; `declared` are the bytes whose checksum the metadata carries."""
    from memkv.wire import messages as msg
    from memkv.wire.frames import Header, sign
    from memkv.wire.opcodes import Opcode

    checksum = payload_checksum(declared if declared is not None else data)
    items = msg.pack_put_item(key, len(data), checksum, BlockMeta().encode())
    meta = msg.encode_meta({}, items, 1)
    return sign(tx, Header(Opcode.PUT, request_id, len(meta), len(data)), meta).pack() + meta + data


def _simple_frame(tx: bytes | None, opcode_name: str, request_id: int, args: dict[str, Any] | None = None) -> bytes:
    from memkv.wire import messages as msg
    from memkv.wire.frames import Header, sign
    from memkv.wire.opcodes import Opcode

    meta = msg.encode_meta(args or {})
    return sign(tx, Header(Opcode[opcode_name], request_id, len(meta)), meta).pack() + meta


def _absent(requirement: str, t: Transport, key: bytes, what: str) -> None:
    check(requirement, t.exists([key]) == [False], f"{what}: nothing was stored", "absent", "present")


# ---- keys (MKV-NS-005) ------------------------------------------------------------------------------

@pytest.mark.requirement("MKV-NS-005")
def test_wrong_secret_unknown_key_and_no_key_are_unauthenticated(memkv: Context) -> None:
    ns = memkv.namespace("sec")
    cred = _cred(memkv, ns, "write")
    _refused(memkv, "MKV-NS-005", "HELLO with the right key id and a wrong secret", ns,
             {"key": _other_secret(cred)}, [E.UNAUTHENTICATED])
    _refused(memkv, "MKV-NS-005", "HELLO with an unknown key id", ns,
             {"key": f"memkv-cf-nobody-{memkv.rng.randrange(10**9)}:{os.urandom(32).hex()}"}, [E.UNAUTHENTICATED])
    _refused(memkv, "MKV-NS-005", "HELLO without a key on an authenticating server", ns, {"key": ""},
             [E.UNAUTHENTICATED])
    good = _client(memkv, ns, {"key": cred})
    key = memkv.key()
    put_ok(good, key, payload(1, 300), "MKV-NS-005")
    kept("MKV-NS-005", good, key, payload(1, 300), "the right key works after the refusals")


@pytest.mark.requirement("MKV-NS-005", "MKV-WIRE-011")
def test_raw_hello_with_a_bad_signature_is_refused(memkv: Context) -> None:
    from memkv.server.testing import hello_bytes

    ns = memkv.namespace("sec")
    cred = _cred(memkv, ns, "read")
    address = _address(memkv)
    frame, _ = hello_bytes(ns, _other_secret(cred))
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(frame)
        _expect_error_and_close("MKV-NS-005", sock, "HELLO signed with a wrong secret")
    good, _ = hello_bytes(ns, cred)
    tampered = bytearray(good)
    tampered[-6] ^= 0x01  # the last digit of the client clock in the HELLO arguments, after signing
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(bytes(tampered))
        _expect_error_and_close("MKV-WIRE-011", sock, "HELLO whose arguments were changed after signing")


# ---- roles and namespaces (MKV-NS-006) ----------------------------------------------------------------

@pytest.mark.requirement("MKV-NS-006", "MKV-ERR-002")
def test_roles_are_enforced_and_refusals_store_nothing(memkv: Context) -> None:
    ns = memkv.namespace("sec")
    admin = memkv.transport(ns)
    reader = _client(memkv, ns, {"role": "read"})
    writer = _client(memkv, ns, {"role": "write"})
    k0, k1 = memkv.key(), memkv.key()
    data = payload(2, 1000)
    put_ok(admin, k0, data, "MKV-NS-006")
    sid = admin.open_session(3600.0, [k0]).session_id
    kept("MKV-NS-006", reader, k0, data, "a read key reads")
    check("MKV-NS-006", reader.exists([k0]) == [True], "a read key may call exists", [True], "other")
    check("MKV-NS-006", reader.session_info(sid).session_id == sid, "a read key may call session_info", sid, "other")
    denied = [E.PERMISSION_DENIED]
    write_ops: list[tuple[str, Callable[[], Any]]] = [
        ("put", lambda: reader.put([PutItem(k1, payload(3, 500))])),
        ("delete", lambda: reader.delete([k0])),
        ("open_session", lambda: reader.open_session(60.0, [k0])),
        ("append", lambda: reader.append(sid, [k0])),
        ("suspend", lambda: reader.suspend(sid, 60.0)),
        ("close_session", lambda: reader.close_session(sid)),
        ("invalidate_keys", lambda: reader.invalidate_keys([k0])),
        ("invalidate_prefix", lambda: reader.invalidate_prefix(k0)),
        ("invalidate_session", lambda: reader.invalidate_session(sid)),
        ("invalidate_model", lambda: reader.invalidate_model(bytes(16))),
        ("invalidate_namespace", lambda: reader.invalidate_namespace()),
    ]
    for name, op in write_ops:
        expect_code("MKV-NS-006", f"{name} with a read key", op, denied, f"reader.{name}(...)")
    _absent("MKV-NS-006", admin, k1, "put with a read key")
    kept("MKV-NS-006", admin, k0, data, "the block survives refused deletes and invalidations")
    check("MKV-NS-006", admin.session_info(sid).state.value == "open", "the session is untouched by refusals",
          "open", admin.session_info(sid).state.value)
    kept("MKV-NS-006", reader, k0, data, "the connection stays usable after refusals")
    expect_code("MKV-NS-006", "invalidate_namespace with a write key", lambda: writer.invalidate_namespace(), denied)
    kept("MKV-NS-006", admin, k0, data, "the namespace survives a refused invalidate_namespace")
    put_ok(writer, k1, payload(3, 500), "MKV-NS-006")
    check("MKV-NS-006", writer.invalidate_keys([k1]) == 1, "a write key invalidates", 1, "other")
    check("MKV-NS-006", admin.invalidate_namespace() >= 1, "an admin key invalidates the namespace", ">= 1", 0)


@pytest.mark.requirement("MKV-NS-006", "MKV-NS-001")
def test_a_key_works_on_its_own_namespace_only(memkv: Context) -> None:
    ns_a, ns_b = memkv.namespace("sec"), memkv.namespace("sec")
    a = memkv.transport(ns_a)
    b = memkv.transport(ns_b)
    key = memkv.key()
    put_ok(a, key, payload(4, 700), "MKV-NS-006")
    for role in ("read", "write", "admin"):
        _refused(memkv, "MKV-NS-006", f"HELLO for namespace B with a {role} key of namespace A", ns_b,
                 {"key": _cred(memkv, ns_a, role)}, [E.PERMISSION_DENIED])
    check("MKV-NS-006", read(b, key) is None, "a connection of B does not see A's block", "absent", "present")
    stats = str(b.stats())
    check("MKV-NS-006", ns_a not in stats, "B's statistics do not mention A", f"no {ns_a}", stats[:300])
    kept("MKV-NS-006", a, key, payload(4, 700), "A keeps its block")


# ---- signed frames (MKV-WIRE-010, MKV-WIRE-011) --------------------------------------------------------

@pytest.mark.requirement("MKV-WIRE-010", "MKV-ERR-002")
def test_forged_or_tampered_frames_are_refused_and_store_nothing(memkv: Context) -> None:
    ns = memkv.namespace("sec")
    admin = memkv.transport(ns)
    keep, key = memkv.key(), memkv.key()
    put_ok(admin, keep, payload(5, 2000), "MKV-WIRE-010")
    data = payload(6, 4096)
    cases: list[tuple[str, Callable[[bytes], bytes]]] = []

    def flip_mac(tx: bytes) -> bytes:
        frame = bytearray(_put_frame(tx, 1, key, data))
        frame[40] ^= 0x01  # a byte of the MAC (header bytes 32..63)
        return bytes(frame)

    def flip_meta(tx: bytes) -> bytes:
        frame = bytearray(_put_frame(tx, 1, key, data))
        frame[64 + 10] ^= 0x01  # a byte of the signed metadata
        return bytes(frame)

    def flip_request_id(tx: bytes) -> bytes:
        frame = bytearray(_put_frame(tx, 1, key, data))
        frame[8] ^= 0x02  # request id, a signed header field
        return bytes(frame)

    def other_key(tx: bytes) -> bytes:
        return _put_frame(os.urandom(32), 1, key, data)

    def unsigned(tx: bytes) -> bytes:
        return _put_frame(None, 1, key, data)

    cases = [("a PUT whose MAC has one byte flipped", flip_mac), ("a PUT whose metadata changed after signing",
             flip_meta), ("a PUT whose request id changed after signing", flip_request_id),
             ("a PUT signed with another key", other_key), ("an unsigned PUT", unsigned)]
    for what, make in cases:
        with _raw(memkv, ns) as (sock, tx, _rx):
            sock.sendall(make(tx))
            _expect_error_and_close("MKV-WIRE-010", sock, what)
        _absent("MKV-WIRE-010", admin, key, what)
    kept("MKV-ERR-002", admin, keep, payload(5, 2000), "a stored block is unchanged by forged frames")


@pytest.mark.requirement("MKV-WIRE-010")
def test_tampered_payload_fails_its_checksum_and_is_not_stored(memkv: Context) -> None:
    from memkv.wire import messages as msg
    from memkv.wire.frames import verify
    from memkv.wire.opcodes import Opcode

    ns = memkv.namespace("sec")
    admin = memkv.transport(ns)
    key = memkv.key()
    data = payload(7, 8192)
    tampered = bytearray(data)
    tampered[5000] ^= 0x40
    with _raw(memkv, ns) as (sock, tx, rx):
        sock.sendall(_put_frame(tx, 1, key, bytes(tampered), declared=data))
        header, meta = _answer(sock)
        try:
            verify(rx, header, meta)
        except MemkvError:
            fail("MKV-WIRE-011", "answers are signed with the server-to-client key", "a valid MAC", "bad MAC")
        if header.opcode is Opcode.ERROR:
            code = ErrorCode(header.status)
        else:
            results = msg.MetaReader(meta, 1 << 16).results()
            code = results[0].status if results else ErrorCode.OK
        check("MKV-WIRE-010", code is E.CHECKSUM_MISMATCH, "a payload changed in flight (MAC intact)",
              "CHECKSUM_MISMATCH", code.name)
    _absent("MKV-WIRE-010", admin, key, "a tampered payload")


@pytest.mark.requirement("MKV-WIRE-011")
def test_frames_are_worthless_on_another_connection_or_direction(memkv: Context) -> None:
    from memkv.wire.frames import compute_mac, verify
    from memkv.wire.opcodes import Opcode

    ns = memkv.namespace("sec")
    admin = memkv.transport(ns)
    key = memkv.key()
    data = payload(8, 3000)
    with _raw(memkv, ns) as (first, tx1, rx1), _raw(memkv, ns) as (second, tx2, _rx2):
        check("MKV-WIRE-011", tx1 != tx2, "each connection derives its own keys", "different keys", "equal keys")
        check("MKV-WIRE-011", tx1 != rx1, "each direction has its own key", "different keys", "equal keys")
        second.sendall(_put_frame(tx1, 1, key, data))  # signed for the first connection
        _expect_error_and_close("MKV-WIRE-011", second, "a frame signed for another connection")
        _absent("MKV-WIRE-011", admin, key, "a frame of another connection")
        first.sendall(_put_frame(tx1, 1, key, data))
        header, meta = _answer(first)
        check("MKV-WIRE-011", header.opcode is Opcode.PUT, "the same frame on its own connection is accepted",
              "PUT answer", header.opcode.name)
        verify(rx1, header, meta)
        check("MKV-WIRE-011", header.mac != compute_mac(tx1, header, meta),
              "answers are not signed with the client-to-server key", "s2c key", "c2s key")
    kept("MKV-WIRE-011", admin, key, data, "the accepted PUT stored the block")


# ---- replays (MKV-WIRE-012) ----------------------------------------------------------------------------

@pytest.mark.requirement("MKV-WIRE-012", "MKV-ERR-002")
def test_replayed_frames_are_refused(memkv: Context) -> None:
    from memkv.wire.opcodes import Opcode

    ns = memkv.namespace("sec")
    admin = memkv.transport(ns)
    key = memkv.key()
    data = payload(9, 2048)
    with _raw(memkv, ns) as (sock, tx, _rx):
        frame = _put_frame(tx, 5, key, data)
        sock.sendall(frame)
        header, _ = _answer(sock)
        check("MKV-WIRE-012", header.opcode is Opcode.PUT, "the original PUT is answered", "PUT", header.opcode.name)
        check("MKV-WIRE-012", admin.invalidate_keys([key]) == 1, "the block is stored, then invalidated", 1, 0)
        sock.sendall(frame)  # the very same signed bytes again
        _expect_error_and_close("MKV-WIRE-012", sock, "the same signed PUT replayed on its connection")
    _absent("MKV-WIRE-012", admin, key, "a replayed PUT")
    for what, ids in (("a request id equal to an earlier one", (7, 7)), ("a smaller request id", (9, 3))):
        with _raw(memkv, ns, "read") as (sock, tx, _rx):
            sock.sendall(_simple_frame(tx, "PING", ids[0]))
            header, _ = _answer(sock)
            check("MKV-WIRE-012", header.opcode is Opcode.PING, "a PING is answered", "PING", header.opcode.name)
            sock.sendall(_simple_frame(tx, "PING", ids[1]))
            _expect_error_and_close("MKV-WIRE-012", sock, what)


@pytest.mark.requirement("MKV-WIRE-012")
def test_replayed_or_stale_hello_is_refused(memkv: Context) -> None:
    from memkv.server.testing import hello_bytes
    from memkv.wire.opcodes import Opcode

    ns = memkv.namespace("sec")
    cred = _cred(memkv, ns, "read")
    address = _address(memkv)
    frame, _ = hello_bytes(ns, cred)
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(frame)
        header, _ = _answer(sock)
        check("MKV-WIRE-012", header.opcode is Opcode.HELLO, "a fresh HELLO is accepted", "HELLO", header.opcode.name)
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(frame)
        _expect_error_and_close("MKV-WIRE-012", sock, "the same HELLO (same client nonce) again")
    now = int(time.time() * 1000)
    for what, stamp in (("a HELLO one hour old", now - 3_600_000), ("a HELLO one hour ahead", now + 3_600_000)):
        stale, _ = hello_bytes(ns, cred, timestamp_ms=stamp)
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(stale)
            _expect_error_and_close("MKV-WIRE-012", sock, what)


# ---- unauthenticated mode and keys files (MKV-NS-007, MKV-NS-008) ----------------------------------------

@pytest.mark.requirement("MKV-NS-007")
def test_a_secure_server_refuses_unauthenticated_clients(memkv: Context) -> None:
    from memkv.wire import messages as msg
    from memkv.wire.frames import Header
    from memkv.wire.opcodes import Opcode

    ns = memkv.namespace("sec")
    address = _address(memkv)
    check("MKV-NS-007", "secure" in memkv.caps.profiles, "the server authenticates and claims secure",
          "secure claimed", sorted(memkv.caps.profiles))
    meta = msg.encode_meta({"namespace": ns, "key_id": None, "client_nonce": os.urandom(16).hex(),
                            "timestamp_ms": int(time.time() * 1000)})
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(Header(Opcode.HELLO, 0, len(meta)).pack() + meta)
        _expect_error_and_close("MKV-NS-007", sock, "an unsigned HELLO without a key id")
    with _raw(memkv, ns, "read") as (_sock, _tx, _rx):
        pass  # open_raw_session verified that the HELLO answer is signed
    from memkv.server.testing import hello_bytes, read_frame

    frame, _ = hello_bytes(ns, _cred(memkv, ns, "read"))
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(frame)
        header, answer = read_frame(sock)
        args = msg.MetaReader(answer, 0).args
        check("MKV-NS-007", header.opcode is Opcode.HELLO and args.get("auth") is True,
              "the HELLO answer says authentication is on", "auth: true", args.get("auth"))


def _launch(memkv: Context, keys_file: str | None, **kwargs: Any) -> Any:
    return launch_or_skip(memkv, keys_file, **kwargs)


@pytest.mark.requirement("MKV-NS-007")
def test_unauthenticated_mode_is_explicit_loud_and_refused_by_keyed_clients(memkv: Context) -> None:
    launched = _launch(memkv, None, insecure=True)
    check("MKV-NS-007", launched.started, "a server started with --insecure-no-auth runs", "started",
          launched.output[-500:])
    insecure = launched.target
    try:
        text = launched.output.lower()
        check("MKV-NS-007", "insecure" in text or "authentication is off" in text,
              "the unauthenticated mode is announced loudly at start-up", "a warning naming it",
              launched.output[-500:] or "nothing")
        caps = insecure.capabilities()
        check("MKV-NS-007", "secure" not in caps.profiles, "an unauthenticated server does not claim secure",
              "no secure", sorted(caps.profiles))
        ns = memkv.namespace("sec")
        cred = _cred(memkv, ns, "write")
        try:
            transport = insecure.second_client(ns, {"key": cred})
        except MemkvError as exc:
            check("MKV-NS-007", exc.code is E.UNAUTHENTICATED, "a client given a key refuses a server that does not "
                  "authenticate", "UNAUTHENTICATED", exc.code.name)
        else:
            if transport is not None:
                transport.close()
            fail("MKV-NS-007", "a client given a key connected to a server that does not authenticate",
                 "UNAUTHENTICATED", "a connection")
    finally:
        insecure.close()


def _keys_file(directory: str, secret_bytes: int, mode: int) -> str:
    import yaml

    path = os.path.join(directory, f"keys-{secret_bytes}-{mode:o}.yaml")
    data = {"namespaces": {"memkv-cf-keys": [{"id": f"k{secret_bytes}", "secret": os.urandom(secret_bytes).hex(),
                                              "role": "admin"}]}}
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(data, handle)
    os.chmod(path, mode)
    return path


@pytest.mark.requirement("MKV-NS-008", "MKV-NS-005")
def test_keys_files_are_checked_at_start_up(memkv: Context) -> None:
    directory = tempfile.mkdtemp(prefix="memkv-cf-keys-")
    try:
        readable = _keys_file(directory, 32, 0o644)
        check("MKV-NS-008", bool(os.stat(readable).st_mode & stat.S_IROTH), "test setup: world-readable file",
              "0644", oct(os.stat(readable).st_mode))
        launched = _launch(memkv, readable)
        if launched.target is not None:
            launched.target.close()
        check("MKV-NS-008", not launched.started, "a keys file every user may read is refused", "refused",
              "the server started")
        short = _keys_file(directory, 8, 0o600)
        launched = _launch(memkv, short)
        if launched.target is not None:
            launched.target.close()
        check("MKV-NS-005", not launched.started, "a secret shorter than 16 bytes is refused", "refused",
              "the server started")
        private = _keys_file(directory, 32, 0o600)
        launched = _launch(memkv, private)
        check("MKV-NS-008", launched.started, "the same keys file, chmod 600, is accepted (control)", "started",
              launched.output[-500:])
        launched.target.close()
    finally:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.requirement("MKV-SEC-052")
def test_a_malformed_keys_file_is_refused_without_quoting_its_secret(memkv: Context) -> None:
    directory = tempfile.mkdtemp(prefix="memkv-cf-keys-")
    secret = os.urandom(32).hex()
    path = os.path.join(directory, "broken-keys.yaml")
    try:
        with open(path, "w", encoding="utf-8") as handle:  # an unclosed flow mapping after the secret
            handle.write(f'namespaces:\n  memkv-cf-keys:\n    - {{id: k, secret: "{secret}", role: admin\n'
                         f"      oops: [\n")
        os.chmod(path, 0o600)
        launched = _launch(memkv, path)
        if launched.target is not None:
            launched.target.close()
        check("MKV-SEC-052", not launched.started, "a malformed keys file is refused", "refused", "the server started")
        leaked = [secret[i : i + 6] for i in range(len(secret) - 6) if secret[i : i + 6] in launched.output]
        check("MKV-SEC-052", not leaked, "the refusal quotes no part of the secret", "no 6 characters of it",
              f"{len(leaked)} pieces, e.g. {leaked[:1]}")
    finally:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
