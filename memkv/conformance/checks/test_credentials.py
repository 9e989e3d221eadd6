"""Credentials over the target's socket, with a peer written from the spec (memkv/conformance/wire_peer.py):
key ids are not enumerable (MKV-SEC-001), which error wins at HELLO (MKV-NS-009), and the forms of
key ids and secrets a server accepts (MKV-SEC-002, MKV-SEC-003)."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import pytest
import yaml

from memkv.conformance.support import Context, check
from memkv.conformance.wire_peer import Frame, Peer, parse_secret

SECURE = "MKV-SEC-001"


def _hook(memkv: Context, name: str, *args: Any) -> Any:
    hook = getattr(memkv.target, name, None)
    value = hook(*args) if callable(hook) else None
    if value is None:
        pytest.skip(f"the target does not offer Target.{name}")
    return value


def _refusal(address: tuple[str, int], namespace: str, key_id: str, secret: bytes) -> tuple[Frame, bool]:
    """The answer to a HELLO with these credentials, and whether the connection closed after it."""
    with Peer(address) as peer:
        frame, _ = peer.hello_frame(namespace, key_id, secret)
        peer.send(frame)
        answer = peer.read()
        return answer, peer.closed()


@pytest.mark.requirement("MKV-SEC-001")
def test_unknown_key_id_and_bad_signature_get_the_same_answer(memkv: Context) -> None:
    address = _hook(memkv, "wire_address")
    ns = memkv.namespace("sec")
    key_id, _, text = str(_hook(memkv, "credential", ns, "write")).partition(":")
    wrong = bytes(b ^ 0x5A for b in parse_secret(text))
    bad_signature = _refusal(address, ns, key_id, wrong)
    unknown = _refusal(address, ns, f"{key_id}-no-such-key"[:64], wrong)
    check(SECURE, bad_signature[0].error == "UNAUTHENTICATED" and bad_signature[1],
          "a bad signature gets UNAUTHENTICATED and the connection closes", "UNAUTHENTICATED, closed",
          f"{bad_signature[0].error or 'accepted'}, {'closed' if bad_signature[1] else 'open'}")
    same = (unknown[0].head, unknown[0].meta, unknown[1]) == (bad_signature[0].head, bad_signature[0].meta,
                                                              bad_signature[1])
    check(SECURE, same, "an unknown key id gets exactly the answer (header, MAC, metadata) of a bad signature",
          bad_signature[0].args, unknown[0].args)


@pytest.mark.requirement("MKV-NS-009", "MKV-NS-006")
def test_first_failing_check_decides_the_hello_error(memkv: Context) -> None:
    address = _hook(memkv, "wire_address")
    ns = memkv.namespace("sec")
    cred = str(_hook(memkv, "credential", ns, "write"))
    cases = [(memkv.namespace("sec"), "PERMISSION_DENIED", "another well-formed namespace the target serves"),
             ("memkv-cf-no-such-namespace", "PERMISSION_DENIED", "a well-formed namespace that does not exist"),
             ("not a namespace!", "INVALID_ARGUMENT", "a malformed namespace")]
    _hook(memkv, "credential", cases[0][0], "write")  # the other namespace exists on the target
    for namespace, expected, what in cases:
        with Peer(address) as peer:
            answer = peer.hello(namespace, cred)
            check("MKV-NS-009", answer.error == expected, f"HELLO with a valid key for {what}", expected,
                  answer.error or "accepted")


def _launch_with(memkv: Context, key_id: str, secret: str) -> tuple[bool, str]:
    hook = getattr(memkv.target, "launch", None)
    directory = tempfile.mkdtemp(prefix="memkv-cf-cred-")
    try:
        path = os.path.join(directory, "keys.yaml")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yaml.safe_dump({"namespaces": {"memkv-cf-cred": [{"id": key_id, "secret": secret, "role": "admin"}]}},
                           handle)
        launched = hook(path) if callable(hook) else None
        if launched is None:
            pytest.skip("the target cannot start further servers of the implementation (Target.launch)")
        if launched.target is not None:
            launched.target.close()
        return bool(launched.started), str(launched.output)[-300:]
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.requirement("MKV-SEC-002")
def test_key_ids_have_one_form(memkv: Context) -> None:
    secret = os.urandom(32).hex()
    for key_id in ("has|bar", "-leading-dash", "x" * 65, "space in id"):
        started, output = _launch_with(memkv, key_id, secret)
        check("MKV-SEC-002", not started, f"a keys file with key id {key_id!r} is refused", "refused", output)
    started, output = _launch_with(memkv, "ok.key_1-A", secret)
    check("MKV-SEC-002", started, "a well-formed key id is accepted (control)", "started", output)


@pytest.mark.requirement("MKV-SEC-003")
def test_secrets_are_hex_or_padded_base64(memkv: Context) -> None:
    raw = os.urandom(32)
    import base64

    padded = base64.b64encode(raw[:31]).decode()
    for secret in ("zz" * 32, raw.hex()[:-1], " ".join(raw.hex()[i:i + 2] for i in range(0, 64, 2)),
                   "base64:" + padded.rstrip("=")):
        started, output = _launch_with(memkv, "k1", secret)
        check("MKV-SEC-003", not started, f"a secret written as {secret[:20]!r}... is refused", "refused", output)
    for secret in (raw.hex(), "base64:" + padded):
        started, output = _launch_with(memkv, "k1", secret)
        check("MKV-SEC-003", started, f"a secret written as {secret[:12]!r}... is accepted (control)", "started",
              output)
