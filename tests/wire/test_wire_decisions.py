"""Wire decisions of spec 1.1 against the reference server and client (MKV-WIRE-040..043, MKV-VER-002,
MKV-SEC-002, MKV-SEC-003, MKV-KEY-008)."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Iterator

import pytest

import memkv
from memkv import PutItem
from memkv.blocks import BlockMeta
from memkv.checksum import payload_checksum
from memkv.conformance.wire_peer import Peer
from memkv.credentials import parse_secret
from memkv.errors import ErrorCode, InvalidArgument
from memkv.keys import model_fingerprint
from memkv.server.keyring import KeyRing
from memkv.server.service import MemkvServer
from memkv.server.testing import in_process_server, write_keys_file
from memkv.wire import messages as msg

req = pytest.mark.requirement
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MemkvServer, dict[str, str]]]:
    root = tmp_path_factory.mktemp("decisions")
    creds = write_keys_file(root / "keys.yaml", {"team-a": [("a-reader", "read"), ("a-writer", "write")]})
    srv = in_process_server(str(root / "data"), str(root / "keys.yaml"), admin_listen="off",
                            max_frame_payload=MiB, idle_timeout_s=1.5, frame_timeout_s=2)
    yield srv, creds
    srv.shutdown()


def _put_item(key: bytes, data: bytes) -> bytes:
    return msg.pack_put_item(key, len(data), payload_checksum(data), BlockMeta().encode())


@req("MKV-WIRE-040")
def test_order_of_checks_after_hello(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = server
    with Peer(srv.address) as peer:
        peer.hello("team-a", creds["a-reader"])
        # role (5) comes before the arguments (6): a reader's PUT with a broken item table
        peer.send(peer.frame("PUT", {}, b"\x00" * 5, 3))
        assert peer.read().error == "PERMISSION_DENIED"
        # the MAC (2) comes before the role: an unsigned PUT is UNAUTHENTICATED and closes
        peer.send(peer.frame("PUT", {}, b"", 0, key=None))
        assert peer.read().error == "UNAUTHENTICATED" and peer.closed()
    with Peer(srv.address) as peer:
        peer.hello("team-a", creds["a-reader"])
        assert peer.call("PING").error == ""
        # the request id (3) comes before the role: a replayed id on a PUT is UNAUTHENTICATED
        peer.send(peer.frame("PUT", {}, b"", 0, request_id=1))
        assert peer.read().error == "UNAUTHENTICATED" and peer.closed()
    with Peer(srv.address) as peer:
        peer.hello("team-a", creds["a-writer"])
        # the arguments (6) come before the operation (7): a bad ttl on an unknown session
        answer = peer.call(0x12, {"session_id": "no-such-session", "pause_ttl_s": -1})
        assert answer.error == "INVALID_ARGUMENT"


@req("MKV-WIRE-041")
def test_client_splits_batches_at_the_frame_payload_limit(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = server
    url = f"memkv+tcp://{srv.address[0]}:{srv.address[1]}"
    before = srv.metrics.operations.labels("PUT", "OK")._value.get()
    blocks = {os.urandom(16): os.urandom(400 * 1024) for _ in range(5)}  # 2 MB > the 1 MiB frame limit
    with memkv.connect(url, namespace="team-a", key=creds["a-writer"]) as t:
        assert all(r.ok for r in t.put([PutItem(k, v) for k, v in blocks.items()]))
        buffers = [bytearray(400 * 1024) for _ in blocks]
        assert all(r.ok for r in t.get_into(list(blocks), buffers))
        assert [bytes(b) for b in buffers] == list(blocks.values())
    assert srv.metrics.operations.labels("PUT", "OK")._value.get() - before >= 3  # split into frames


@req("MKV-WIRE-041")
def test_server_refuses_over_limit_frames_whole(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = server
    keys = [os.urandom(16) for _ in range(3)]
    data = os.urandom(400 * 1024)
    with Peer(srv.address) as peer:
        peer.hello("team-a", creds["a-writer"])
        items = b"".join(_put_item(k, data) for k in keys)
        peer.send(peer.frame("PUT", {}, items, 3, data * 3))  # 1.2 MB of payload > 1 MiB
        assert peer.read().error == "LIMIT_EXCEEDED" and peer.closed()
    with Peer(srv.address) as peer:
        peer.hello("team-a", creds["a-writer"])
        for key in keys:
            answer = peer.call("PUT", {}, _put_item(key, data), 1, data)
            assert answer.items[1][:2] == b"\x00\x00"
        gets = b"".join(msg.pack_get_item(k, len(data)) for k in keys)
        answer = peer.call("GET", {}, gets, 3)  # the answer would carry 1.2 MB
        assert answer.error == "LIMIT_EXCEEDED" and not answer.payload
        assert peer.call("PING").error == ""  # the connection stays usable


@req("MKV-WIRE-041")
def test_a_refused_frame_can_be_sent_to_its_end_and_its_answer_read(server: tuple[MemkvServer, dict[str, str]]
                                                                    ) -> None:
    # The server refuses the frame on its header, answers and closes while the payload is still
    # coming. Closing over unread bytes would reset the connection: the rest of the send would fail
    # and the answer could be lost. The server reads and drops the rest before it closes.
    srv, creds = server
    data = os.urandom(400 * 1024)
    with Peer(srv.address) as peer:
        peer.hello("team-a", creds["a-writer"])
        keys = [os.urandom(16) for _ in range(3)]
        frame = peer.frame("PUT", {}, b"".join(_put_item(k, data) for k in keys), 3, data * 3)
        first = len(frame) - len(data) * 3 + 200 * 1024  # the header, the items and 200 KiB of payload
        peer.send(frame[:first])
        readable, _, _ = select.select([peer.sock], [], [], 10.0)
        assert readable, "no answer to a frame over the payload limit"
        time.sleep(0.3)  # the server has answered and is closing
        peer.send(frame[first:])
        assert peer.read().error == "LIMIT_EXCEEDED" and peer.closed()


@req("MKV-WIRE-042")
def test_idle_timeout_is_announced_and_ping_keeps_a_reader_alive(server: tuple[MemkvServer, dict[str, str]]
                                                                 ) -> None:
    srv, creds = server
    with Peer(srv.address) as peer:
        answer = peer.hello("team-a", creds["a-reader"])
        idle = answer.args["idle_timeout_s"]
        assert idle == 1.5
        deadline = time.monotonic() + 2 * idle
        while time.monotonic() < deadline:
            assert peer.call("PING").error == ""
            time.sleep(idle / 4)
        assert peer.call("PING").error == ""
    with Peer(srv.address) as quiet:
        quiet.hello("team-a", creds["a-reader"])
        assert quiet.closed(wait=idle + 5)  # a silent connection is closed after the idle timeout


@req("MKV-WIRE-043")
def test_unknown_status_codes_read_as_internal() -> None:
    raw = msg.encode_meta({}, b"\xe7\x03\x00\x00", 1)  # one result with status 999, empty message
    assert msg.MetaReader(raw, 4).results()[0].status is ErrorCode.INTERNAL


@req("MKV-VER-002")
def test_unknown_arguments_are_ignored_by_both_sides(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = server
    with Peer(srv.address) as peer:
        hello = peer.hello("team-a", creds["a-writer"], future_option={"x": 1})
        assert hello.error == ""
        assert peer.call("PING", {"added_in_1_9": True}).error == ""
        # an unknown opcode is not ignored
        peer.send(peer.frame(0x6E))
        assert peer.read().error == "PROTOCOL_ERROR"
    caps = msg.capabilities_from({"backend": "x", "profiles": ["core"], "limits": {"max_batch": 4},
                                  "spec_version": "1.9", "capacity_bytes": None, "added_in_1_9": [1]})
    assert caps.limits.max_batch == 4


@req("MKV-SEC-002")
def test_key_ids_of_a_keys_file_have_one_form() -> None:
    secret = os.urandom(32).hex()
    for bad in ("a|b", "-x", "x" * 65, "", "é"):
        with pytest.raises(InvalidArgument):
            KeyRing.from_mapping({"namespaces": {"ns": [{"id": bad, "secret": secret, "role": "read"}]}})
    ring = KeyRing.from_mapping({"namespaces": {"ns": [{"id": "a.b_c-1", "secret": secret, "role": "read"}]}})
    assert ring.get("a.b_c-1") is not None


@req("MKV-SEC-003")
def test_secret_forms() -> None:
    raw = bytes(range(32))
    assert parse_secret(raw.hex()) == raw == parse_secret(raw.hex().upper())
    assert parse_secret("base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=") == raw
    for bad in ("zz" * 16, raw.hex()[:-1], "00 " * 16, "base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
                "00" * 15):
        with pytest.raises(InvalidArgument):
            parse_secret(bad)


@req("MKV-KEY-008")
def test_fingerprint_values_are_text_or_non_negative_integers() -> None:
    assert model_fingerprint("m", tp_size=8) == model_fingerprint("m", tp_size="8")
    for bad in (True, False, 1.5, None, -1, [1], {"a": 1}):
        with pytest.raises(InvalidArgument):
            model_fingerprint("m", attribute=bad)


@req("MKV-CLU-060")
def test_shard_group_is_optional_and_bounded_in_capabilities() -> None:
    from memkv.errors import ProtocolError
    from memkv.transport import Capabilities, Limits

    lone = Capabilities("tcp", frozenset({"core"}), Limits())
    assert "shard_group" not in lone.to_dict()  # a lone server's answer is the bytes of 1.1
    grouped = Capabilities("tcp", frozenset({"core"}), Limits(), shard_group=("h:1", "h:3"))
    assert msg.capabilities_from(grouped.to_dict()).shard_group == ("h:1", "h:3")
    assert msg.capabilities_from(lone.to_dict()).shard_group == ()
    for bad in (["h:1"] * (msg.MAX_SHARD_GROUP + 1), ["h:1", 7], [""], "h:1,h:3", ["x" * (msg.MAX_SHARD_ADDRESS + 1)],
                ["h:1", "nohost"], ["h:0"]):
        with pytest.raises(ProtocolError):
            msg.capabilities_from(grouped.to_dict() | {"shard_group": bad})
