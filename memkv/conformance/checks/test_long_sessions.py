"""A session longer than one request or frame holds works end to end (MKV-SES-012).

Versions 1.0 and 1.1 of the wire bounded every answer by `max_items` (256) while a session answer
carried the whole chain, so the 257th append was applied and its answer refused, and every later
answer about the session failed. Every backend is held to the same rule here: a chain of
`max_batch` + 44 keys, built by appends that cross the bound one key at a time, is reported whole
by every operation.

The chain names 8 stored 1-byte blocks in a random order (a chain may name a block twice), so a
target whose smallest allocation is large still holds them all; the order makes a reordered,
truncated or shifted chain visible.
"""

from __future__ import annotations

import pytest

from memkv.conformance.support import Context, check, put_ok
from memkv.sessions import SessionState

REQ = "MKV-SES-012"
HOUR = 3600.0
STORED = 8


@pytest.mark.requirement("MKV-SES-012")
def test_a_session_longer_than_one_request_works_end_to_end(memkv: Context) -> None:
    limits = memkv.limits
    length = min(limits.max_batch + 44, limits.max_session_blocks)
    if length <= limits.max_batch:
        pytest.skip(f"max_session_blocks {limits.max_session_blocks} fits in one batch of {limits.max_batch}")
    t = memkv.transport()
    blocks = [memkv.key() for _ in range(STORED)]
    for key in blocks:
        put_ok(t, key, b"x", REQ)
    chain = tuple(memkv.rng.choice(blocks) for _ in range(length))
    first = limits.max_batch - 2
    repro = (f"put {STORED} blocks; s = open(1 h, {first} keys); append 4 keys one at a time (across max_batch "
             f"= {limits.max_batch}); append the other {length - first - 4}; info, suspend, resume, fork, close")

    def whole(what: str, keys: tuple[bytes, ...], expected: tuple[bytes, ...] = chain) -> None:
        check(REQ, keys == expected, f"{what} reports the whole chain in order", f"{len(expected)} keys",
              f"{len(keys)} keys" + ("" if len(keys) != len(expected) else " in another order"), repro)

    sid = t.open_session(HOUR, chain[:first]).session_id
    for position in range(first, first + 4):
        grown = t.append(sid, [chain[position]])
        whole(f"append of key {position + 1}", grown.keys, chain[:position + 1])
    whole("the last append", t.append(sid, list(chain[first + 4:])).keys)
    whole("session_info", t.session_info(sid).keys)
    whole("suspend", t.suspend(sid, HOUR).keys)
    resumed = t.resume(sid)
    check(REQ, resumed.session.state is SessionState.OPEN, "resume of the long session opens it", "open",
          resumed.session.state.value, repro)
    whole("resume (valid keys)", resumed.valid_keys)
    whole("resume (the session)", resumed.session.keys)
    fork = t.fork(sid)
    whole("fork of all keys", fork.keys)
    whole(f"fork of {length - 1} keys", t.fork(sid, prefix_len=length - 1).keys, chain[:length - 1])
    whole("close", t.close_session(sid).keys)
    removed = t.invalidate_session(fork.session_id)
    check(REQ, removed == STORED, "invalidate_session of the long fork removes each block once", STORED, removed,
          repro)
