"""Cluster session ids: the home shard's tag, a dash, and the random digits the client drew; every part of the
session on every shard has this one id (MKV-CLU-014, MKV-CLU-050)."""

from __future__ import annotations

import xxhash

from ..errors import UnknownSession

TAG_LENGTH = 8


def home_tag(shard_id: str) -> str:
    """8 lower-case hex digits of the low 32 bits of XXH3-64(UTF-8(shard id))."""
    return f"{xxhash.xxh3_64_intdigest(shard_id.encode()) & 0xFFFFFFFF:08x}"


def split_session_id(session_id: object) -> tuple[str, str]:
    """(home tag, the home shard's session id); UNKNOWN_SESSION for an id of no cluster."""
    if (not isinstance(session_id, str) or len(session_id) <= TAG_LENGTH + 1
            or session_id[TAG_LENGTH] != "-"):
        raise UnknownSession(f"{session_id!r} is not a session id of a cluster")
    return session_id[:TAG_LENGTH], session_id[TAG_LENGTH + 1:]


__all__ = ["home_tag", "split_session_id"]
