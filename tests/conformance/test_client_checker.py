"""memkv's tcp client certified by the client checker (memkv/conformance/client_checker.py), and the checker
failing a client that skips payload verification (MKV-WIRE-021, MKV-WIRE-043, MKV-WIRE-011, MKV-NS-007,
MKV-WIRE-041)."""

from __future__ import annotations

import pytest

import memkv
from memkv.backends import tcp
from memkv.checksum import payload_checksum
from memkv.conformance.client_checker import SCRIPTED_PAYLOAD, check_client
from memkv.transport import Transport


def _memkv_client(url: str, namespace: str, key: str | None) -> Transport:
    return memkv.connect(url, namespace=namespace, key=key)


@pytest.mark.requirement("MKV-WIRE-021", "MKV-WIRE-043", "MKV-WIRE-011", "MKV-NS-007", "MKV-WIRE-041")
def test_memkv_tcp_client_is_certified() -> None:
    results = check_client(_memkv_client)
    assert [r for r in results if not r.passed] == []
    assert len(results) == 5


@pytest.mark.requirement("MKV-WIRE-021")
def test_checker_fails_a_client_that_trusts_payloads(monkeypatch: pytest.MonkeyPatch) -> None:
    original = tcp.TcpConnection._recv_hashed

    def trusting(self: tcp.TcpConnection, target: memoryview) -> int:
        original(self, target)
        return payload_checksum(SCRIPTED_PAYLOAD)  # as if every payload matched its checksum

    monkeypatch.setattr(tcp.TcpConnection, "_recv_hashed", trusting)
    results = {r.requirement: r for r in check_client(_memkv_client)}
    assert not results["MKV-WIRE-021"].passed
    assert results["MKV-WIRE-043"].passed


@pytest.mark.requirement("MKV-WIRE-021")
def test_command_certifies_memkv_connect(capsys: pytest.CaptureFixture[str]) -> None:
    from memkv.cli.main import main

    assert main(["conformance-client", "--connect", "memkv:connect"]) == 0
    out = capsys.readouterr().out
    assert "verdict: CERTIFIED" in out and out.count("PASS MKV-") == 5
