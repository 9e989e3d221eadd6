"""The bound on a session's chain (MKV-SES-003): at most `max_session_blocks` keys, for `open` and
`append`; one key more is refused with LIMIT_EXCEEDED and changes nothing.

The chain repeats one stored key (a chain names stored blocks; nothing forbids naming one twice),
so the check stores a single block whatever the declared limit.

A target that claims the wire profile takes at most `max_items` keys in one request
(MKV-WIRE-041) and answers every append with the whole chain (MKV-WIRE-050), so building a chain
of the reference limit over the wire costs about 3,900 appends whose answers add up to some 31 GB:
there only the refusals are checked (one key over the limit, in open and in append), not the
acceptance of exactly the limit. A cluster (profile cluster) reaches its shards over the wire, so
the same holds for it. A chain longer than one request is checked on every target by
test_long_sessions.py (MKV-SES-012).
"""

from __future__ import annotations

import pytest

from memkv.conformance.support import Context, check, expect_code, outcome, put_ok
from memkv.errors import ErrorCode

E = ErrorCode
HOUR = 3600.0
#: a declared limit above this is too large to build a chain of in one check (16 bytes a key)
LARGEST_CHECKED = 4 * 1024 * 1024


def _uneven_split(limit: int) -> int:
    """Keys to open with so that `first + (limit + 1 - first)` keys exceed the limit while the two
    counts share a bit: a target that combined them in any way but adding them is seen."""
    return next((first for first in range(2, 64) if first & (limit + 1 - first)), 1)


@pytest.mark.requirement("MKV-SES-003")
def test_a_session_holds_at_most_max_session_blocks_keys(memkv: Context) -> None:
    limit = memkv.limits.max_session_blocks
    if limit > LARGEST_CHECKED:
        pytest.skip(f"max_session_blocks {limit} is over {LARGEST_CHECKED}: too large a chain to build in a check")
    t = memkv.transport()
    key = memkv.key()
    put_ok(t, key, b"x", "MKV-SES-003")
    first = _uneven_split(limit)
    repro = f"put k (1 byte); s = open(1 h, [k] * {first}); append(s, [k] * n) with max_session_blocks = {limit}"

    expect_code("MKV-SES-003", f"open with max_session_blocks + 1 = {limit + 1} keys",
                lambda: t.open_session(HOUR, [key] * (limit + 1)), [E.LIMIT_EXCEEDED], repro)
    sid = t.open_session(HOUR, [key] * first).session_id
    expect_code("MKV-SES-003", f"append of {limit + 1 - first} keys to a session of {first} (one over the limit)",
                lambda: t.append(sid, [key] * (limit + 1 - first)), [E.LIMIT_EXCEEDED], repro)
    held = len(t.session_info(sid).keys)
    check("MKV-SES-003", held == first, "a refused append leaves the session unchanged", first, held, repro)
    if {"wire", "cluster"} & memkv.claimed:
        return
    code, info = outcome(lambda: t.append(sid, [key] * (limit - first)))
    check("MKV-SES-003", code is E.OK, f"append up to exactly max_session_blocks ({limit} keys)", "OK", code.name,
          repro)
    check("MKV-SES-003", info is not None and len(info.keys) == limit, "the session holds max_session_blocks keys",
          limit, None if info is None else len(info.keys), repro)
    expect_code("MKV-SES-003", "append of one key to a full session", lambda: t.append(sid, [key]),
                [E.LIMIT_EXCEEDED], repro)
    t.close_session(sid)
    code, _ = outcome(lambda: t.open_session(HOUR, [key] * limit))
    check("MKV-SES-003", code is E.OK, f"open with exactly max_session_blocks ({limit}) keys", "OK", code.name, repro)
