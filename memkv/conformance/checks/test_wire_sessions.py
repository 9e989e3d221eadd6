"""Session answers longer than `max_items` on the wire (MKV-WIRE-050, MKV-WIRE-051).

The spec-written peer (memkv/conformance/wire_peer.py) speaks minor 2 for MKV-WIRE-050, and
minor 1, as a 1.1 client does, for MKV-WIRE-051; the blocks are stored through the target's own
client first. The chain names 8 stored blocks in a random order, as in test_long_sessions.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import pytest

from memkv.conformance.checks.test_wire import _address, _cred
from memkv.conformance.support import Context, check, fail, put_ok
from memkv.conformance.wire_peer import Frame, Peer

HOUR = 3600.0
STORED = 8


@contextlib.contextmanager
def _speaking(memkv: Context, namespace: str, minor: int) -> Iterator[Peer]:
    with Peer(_address(memkv), minor=minor) as peer:
        answer = peer.hello(namespace, _cred(memkv, namespace))
        if answer.error:
            fail("MKV-WIRE-008", "a valid HELLO is accepted", "HELLO answer", f"{answer.error}: {answer.args}")
        yield peer


def _max_items(peer: Peer) -> int:
    assert peer.hello_answer is not None
    return int(peer.hello_answer.args.get("limits", {}).get("max_items", 0))


def _chain(memkv: Context, namespace: str, length: int) -> list[bytes]:
    t = memkv.transport(namespace)
    blocks = [memkv.key() for _ in range(STORED)]
    for key in blocks:
        put_ok(t, key, b"x", "MKV-WIRE-050")
    return [memkv.rng.choice(blocks) for _ in range(length)]


def _keys(answer: Frame) -> list[bytes]:
    count, raw = answer.items
    return [raw[i * 16:(i + 1) * 16] for i in range(count)]


def _session(requirement: str, peer: Peer, opcode: str, args: dict[str, object], keys: Sequence[bytes] = ()
             ) -> Frame:
    answer = peer.call(opcode, args, b"".join(keys), len(keys))
    check(requirement, not answer.error, f"{opcode} is answered", opcode, f"{answer.error}: {answer.args}")
    return answer


@pytest.mark.requirement("MKV-WIRE-050")
def test_session_answers_carry_the_whole_chain_past_max_items(memkv: Context) -> None:
    namespace = memkv.namespace("wire-ses")
    with _speaking(memkv, namespace, minor=2) as peer:
        max_items = _max_items(peer)
        length = max_items + 44
        if length > memkv.limits.max_session_blocks:
            pytest.skip(f"max_session_blocks {memkv.limits.max_session_blocks} is within one frame")
        chain = _chain(memkv, namespace, length)
        repro = (f"minor-2 peer: SESSION_OPEN with {max_items - 10} keys, SESSION_APPEND of 54 "
                 f"(max_items = {max_items}), SESSION_INFO")
        opened = _session("MKV-WIRE-050", peer, "SESSION_OPEN", {"ttl_s": HOUR}, chain[:max_items - 10])
        sid = opened.args["session_id"]
        for opcode, args, keys in (("SESSION_APPEND", {"session_id": sid}, chain[max_items - 10:]),
                                   ("SESSION_INFO", {"session_id": sid}, [])):
            answer = _session("MKV-WIRE-050", peer, opcode, args, keys)
            got = _keys(answer)
            check("MKV-WIRE-050", got == chain, f"the {opcode} answer carries all {length} keys in order",
                  f"{length} keys", f"{len(got)} keys", repro)


@pytest.mark.requirement("MKV-WIRE-051")
def test_a_minor_1_peer_is_refused_what_it_cannot_receive_and_nothing_changes(memkv: Context) -> None:
    namespace = memkv.namespace("wire-ses")
    with _speaking(memkv, namespace, minor=2) as new, _speaking(memkv, namespace, minor=1) as old:
        max_items = _max_items(new)
        if max_items + 44 > memkv.limits.max_session_blocks:
            pytest.skip(f"max_session_blocks {memkv.limits.max_session_blocks} is within one frame")
        chain = _chain(memkv, namespace, max_items + 44)
        long_sid = _session("MKV-WIRE-051", new, "SESSION_OPEN", {"ttl_s": HOUR}, chain[:max_items - 10]).args[
            "session_id"]
        _session("MKV-WIRE-051", new, "SESSION_APPEND", {"session_id": long_sid}, chain[max_items - 10:])
        short_sid = _session("MKV-WIRE-051", new, "SESSION_OPEN", {"ttl_s": HOUR}, chain[:max_items - 10]).args[
            "session_id"]
        repro = f"a {max_items + 44}-key and a {max_items - 10}-key session; a minor-1 peer (max_items = {max_items})"
        for opcode, args, keys in (("SESSION_APPEND", {"session_id": short_sid}, chain[:20]),
                                   ("SESSION_INFO", {"session_id": long_sid}, []),
                                   ("SESSION_SUSPEND", {"session_id": long_sid, "pause_ttl_s": HOUR}, []),
                                   ("SESSION_CLOSE", {"session_id": long_sid}, [])):
            answer = old.call(opcode, args, b"".join(keys), len(keys))
            check("MKV-WIRE-051", answer.error == "LIMIT_EXCEEDED",
                  f"{opcode} whose answer would carry more than max_items keys, to a minor-1 peer",
                  "LIMIT_EXCEEDED", answer.error or f"an answer of {answer.items[0]} keys", repro)
        short = _keys(_session("MKV-WIRE-051", old, "SESSION_INFO", {"session_id": short_sid}))
        check("MKV-WIRE-051", short == chain[:max_items - 10], "the refused append changed nothing",
              f"{max_items - 10} keys", f"{len(short)} keys", repro)
        still = _session("MKV-WIRE-051", new, "SESSION_INFO", {"session_id": long_sid})
        check("MKV-WIRE-051", still.args.get("state") == "open" and _keys(still) == chain,
              "the refused suspend and close changed nothing", f"open, {len(chain)} keys",
              f"{still.args.get('state')}, {len(_keys(still))} keys", repro)


def _session_id(memkv: Context) -> str:
    return memkv.rng.randbytes(16).hex()


@pytest.mark.requirement("MKV-WIRE-052")
def test_sessions_take_the_ids_their_clients_choose(memkv: Context) -> None:
    namespace = memkv.namespace("wire-ses")
    chain = _chain(memkv, namespace, 3)
    chosen, forked = _session_id(memkv), _session_id(memkv)
    repro = f"minor-2 peer: SESSION_OPEN session_id={chosen}; again; SESSION_FORK new_session_id={forked}; again"
    with _speaking(memkv, namespace, minor=2) as peer:
        opened = _session("MKV-WIRE-052", peer, "SESSION_OPEN", {"ttl_s": HOUR, "session_id": chosen}, chain)
        check("MKV-WIRE-052", opened.args.get("session_id") == chosen, "SESSION_OPEN uses the client's id", chosen,
              opened.args.get("session_id"), repro)
        again = peer.call("SESSION_OPEN", {"ttl_s": HOUR, "session_id": chosen})
        check("MKV-WIRE-052", again.error == "INVALID_ARGUMENT", "an id the namespace holds is refused",
              "INVALID_ARGUMENT", again.error or "accepted", repro)
        fork = _session("MKV-WIRE-052", peer, "SESSION_FORK", {"session_id": chosen, "new_session_id": forked})
        check("MKV-WIRE-052", (fork.args.get("session_id"), fork.args.get("parent_id")) == (forked, chosen),
              "SESSION_FORK uses the client's new id and records its parent", (forked, chosen),
              (fork.args.get("session_id"), fork.args.get("parent_id")), repro)
        for args in ({"session_id": chosen, "new_session_id": forked}, {"session_id": chosen, "new_session_id": chosen},
                     {"session_id": chosen, "new_session_id": "not an id!"}):
            refused = peer.call("SESSION_FORK", args)
            check("MKV-WIRE-052", refused.error == "INVALID_ARGUMENT",
                  f"a fork to the id {args['new_session_id']!r} is refused", "INVALID_ARGUMENT",
                  refused.error or "accepted", repro)
        info = _session("MKV-WIRE-052", peer, "SESSION_INFO", {"session_id": forked})
        check("MKV-WIRE-052", _keys(info) == chain, "the refused forks left the first one as it was", "3 keys",
              f"{len(_keys(info))} keys", repro)


@pytest.mark.requirement("MKV-WIRE-053")
def test_foreign_keys_are_taken_into_the_chain(memkv: Context) -> None:
    namespace = memkv.namespace("wire-ses")
    stored = _chain(memkv, namespace, 2)
    elsewhere = [memkv.key(), memkv.key()]
    repro = "minor-2 peer: SESSION_OPEN foreign=true with a key not stored; SESSION_APPEND with and without foreign"
    with _speaking(memkv, namespace, minor=2) as peer:
        opened = _session("MKV-WIRE-053", peer, "SESSION_OPEN", {"ttl_s": HOUR, "foreign": True},
                          [stored[0], elsewhere[0]])
        sid = opened.args["session_id"]
        check("MKV-WIRE-053", _keys(opened) == [stored[0], elsewhere[0]], "open with foreign keeps a key not stored",
              "2 keys", f"{len(_keys(opened))} keys", repro)
        plain = peer.call("SESSION_APPEND", {"session_id": sid}, elsewhere[1], 1)
        check("MKV-WIRE-053", plain.error == "NOT_FOUND", "without foreign a key not stored is NOT_FOUND", "NOT_FOUND",
              plain.error or "accepted", repro)
        grown = _session("MKV-WIRE-053", peer, "SESSION_APPEND", {"session_id": sid, "foreign": True},
                         [elsewhere[1], stored[1]])
        expected = [stored[0], elsewhere[0], elsewhere[1], stored[1]]
        check("MKV-WIRE-053", _keys(grown) == expected, "append with foreign keeps every key in order",
              "4 keys", f"{len(_keys(grown))} keys", repro)


@pytest.mark.requirement("MKV-WIRE-054")
def test_resume_cuts_the_chain_to_the_prefix_the_client_states(memkv: Context) -> None:
    namespace = memkv.namespace("wire-ses")
    chain = _chain(memkv, namespace, 3)
    repro = "minor-2 peer: open with 3 stored keys, suspend, resume prefix_len=4 (refused), resume prefix_len=1"
    with _speaking(memkv, namespace, minor=2) as peer:
        sid = _session("MKV-WIRE-054", peer, "SESSION_OPEN", {"ttl_s": HOUR}, chain).args["session_id"]
        _session("MKV-WIRE-054", peer, "SESSION_SUSPEND", {"session_id": sid, "pause_ttl_s": HOUR})
        over = peer.call("SESSION_RESUME", {"session_id": sid, "prefix_len": 4})
        check("MKV-WIRE-054", over.error == "INVALID_ARGUMENT", "a prefix_len over the chain's length is refused",
              "INVALID_ARGUMENT", over.error or "accepted", repro)
        still = _session("MKV-WIRE-054", peer, "SESSION_INFO", {"session_id": sid})
        check("MKV-WIRE-054", still.args.get("state") == "suspended" and _keys(still) == chain,
              "the refused resume changed nothing", "suspended, 3 keys",
              f"{still.args.get('state')}, {len(_keys(still))} keys", repro)
        resumed = _session("MKV-WIRE-054", peer, "SESSION_RESUME", {"session_id": sid, "prefix_len": 1})
        check("MKV-WIRE-054", resumed.args.get("state") == "open" and _keys(resumed) == chain[:1],
              "resume keeps exactly the stated prefix of stored keys", "open, 1 key",
              f"{resumed.args.get('state')}, {len(_keys(resumed))} keys", repro)
