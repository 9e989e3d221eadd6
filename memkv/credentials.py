"""API key ids, secrets and the `<key id>:<secret>` credential (spec/wire.md "Authentication").

Clients parse the credential they are given (a URL's `key=`, MEMKV_KEY); the server parses the
secrets of its keys file and the admin API's bearer tokens with the same rules (MKV-SEC-002,
MKV-SEC-003).
"""

from __future__ import annotations

import base64
import binascii
import os
import re

from .errors import InvalidArgument

MIN_SECRET_BYTES = 16
KEY_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HEX_SECRET_RE = re.compile(r"(?:[0-9a-fA-F]{2})+")


def parse_secret(text: str) -> bytes:
    """A secret written as hex digits or as `base64:...`, at least MIN_SECRET_BYTES long."""
    text = text.strip()
    try:
        if text.startswith("base64:"):
            raw = base64.b64decode(text[7:], validate=True)
        elif _HEX_SECRET_RE.fullmatch(text):
            raw = bytes.fromhex(text)
        else:
            raise ValueError(text)
    except (ValueError, binascii.Error):
        raise InvalidArgument("a key secret must be hex digits or base64:<...>") from None
    if len(raw) < MIN_SECRET_BYTES:
        raise InvalidArgument(f"a key secret must be at least {MIN_SECRET_BYTES} bytes")
    return raw


def parse_credential(text: str) -> tuple[str, bytes]:
    """`<key id>:<secret>` as used by clients, MEMKV_KEY and the admin API's bearer token."""
    key_id, sep, secret = text.partition(":")
    if not sep or not key_id:
        raise InvalidArgument("a credential is '<key id>:<secret>'")
    try:
        return key_id, parse_secret(secret)
    except InvalidArgument as exc:
        raise InvalidArgument(f"credential of key {key_id!r}: {exc.message}") from None


def checked_credential(text: str, source: str) -> str:
    """`text` when it is a well-formed `<key id>:<secret>`; else InvalidArgument naming where it came from."""
    try:
        parse_credential(text)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{source}: {exc.message}") from None
    return text


def generate_secret() -> str:
    """A new random secret of 32 bytes, in hex (the recommended length)."""
    return os.urandom(32).hex()
