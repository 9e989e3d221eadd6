"""The admin port and the wire protocol: a wire client sent to the admin port is answered at once."""

from __future__ import annotations

import socket
import time
import urllib.parse

import pytest

from memkv.conformance.support import Context, check
from memkv.wire.frames import Header
from memkv.wire.opcodes import Opcode


@pytest.mark.requirement("MKV-WIRE-100")
def test_a_wire_hello_at_the_admin_port_gets_http_400_at_once(memkv: Context) -> None:
    url = getattr(memkv.target, "admin_url", None)
    if not url:
        pytest.skip("the target offers no admin API URL (Target.admin_url)")
    parsed = urllib.parse.urlsplit(str(url))
    started = time.monotonic()
    with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 80), timeout=5) as sock:
        sock.sendall(Header(Opcode.HELLO, 1, 0).pack())
        try:
            answer = sock.recv(64)
        except TimeoutError:
            answer = b""
    elapsed = time.monotonic() - started
    check("MKV-WIRE-100", answer.startswith(b"HTTP/") and b" 400 " in answer[:16],
          "a HELLO frame header sent to the admin port is answered with HTTP 400", "HTTP/1.x 400 ...",
          answer[:32])
    check("MKV-WIRE-100", elapsed < 3, "the answer comes at once, not after a timeout", "< 3 s", f"{elapsed:.1f} s")
