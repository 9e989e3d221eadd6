"""Profile nixl: the NIXL control frames over the target's socket (spec/wire.md section 8, MKV-WIRE-022,
MKV-WIRE-023), with the spec-written peer. Moving bytes by NIXL (MKV-WIRE-024, -025) needs a NIXL agent in
the checker and is listed in memkv/conformance/exclusions.yaml."""

from __future__ import annotations

import os
import pickle
import struct
import tempfile

import pytest

from memkv.conformance.checks.test_wire import _open, _refused
from memkv.conformance.support import Context, check

NIXL_HELLO, NIXL_PUT, NIXL_GET = 0x40, 0x41, 0x42
MiB = 1024 * 1024


class _Trap:
    """Unpickling this creates a directory: proof that a server decoded metadata with pickle."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (self.path,)


def _blob(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


@pytest.mark.requirement("MKV-WIRE-022")
def test_nixl_frames_carry_no_payload_and_refusals_keep_the_connection(memkv: Context) -> None:
    with _open(memkv) as peer:
        item = os.urandom(16) + struct.pack("<QQIB", 4096, 4096, 0, 0)
        peer.send(peer.frame(NIXL_GET, {}, item, 1, b"payload"))
        _refused("MKV-WIRE-022", peer, "a NIXL_GET with a payload", ("PROTOCOL_ERROR",), closes=True)
    with _open(memkv) as peer:
        answer = peer.call(NIXL_HELLO, {"agent": "memkv-cf-agent", "epoch": 0}, _blob(b"not NIXL metadata"), 1)
        check("MKV-WIRE-022", answer.error in ("INVALID_ARGUMENT", "UNSUPPORTED"), "NIXL_HELLO with metadata NIXL "
              "cannot load is refused (or UNSUPPORTED without NIXL)", "INVALID_ARGUMENT or UNSUPPORTED",
              answer.error or "accepted")
        check("MKV-WIRE-022", peer.call("PING").error == "", "the connection stays open for PUT and GET", "PING",
              "error")


@pytest.mark.requirement("MKV-WIRE-023")
def test_nixl_hello_is_checked_and_never_unpickled(memkv: Context) -> None:
    if "nixl" not in memkv.caps.profiles:
        pytest.skip("the target does not claim nixl")
    directory = tempfile.mkdtemp(prefix="memkv-cf-trap-")
    trap = os.path.join(directory, "unpickled")
    with _open(memkv) as peer:
        answer = peer.call(NIXL_HELLO, {"agent": "memkv-cf-agent", "epoch": 0}, _blob(pickle.dumps(_Trap(trap))), 1)
        check("MKV-WIRE-023", answer.error == "INVALID_ARGUMENT", "agent metadata that is a pickle is refused",
              "INVALID_ARGUMENT", answer.error or "accepted")
        check("MKV-WIRE-023", not os.path.exists(trap), "the metadata was never unpickled", "no side effect",
              "the pickle ran")
        answer = peer.call(NIXL_HELLO, {"epoch": 0}, _blob(b"x"), 1)
        check("MKV-WIRE-023", answer.error == "INVALID_ARGUMENT", "NIXL_HELLO without the agent argument",
              "INVALID_ARGUMENT", answer.error or "accepted")
        answer = peer.call(NIXL_HELLO, {"agent": "memkv-cf-agent", "epoch": 0}, _blob(bytes(MiB + 1)), 1)
        check("MKV-WIRE-023", answer.error in ("LIMIT_EXCEEDED", "PROTOCOL_ERROR"), "agent metadata over 1 MiB",
              "LIMIT_EXCEEDED", answer.error or "accepted")
    os.rmdir(directory)
