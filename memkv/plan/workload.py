"""Multi-agent KV-cache workloads: the Mooncake trace reader, a synthetic generator, and a planner.

Pure: no store I/O. A workload is a sequence of `TraceRequest`s whose `hash_ids` are prefix
chains of 512-token blocks (equal ids mean a reusable prefix block, as in the Mooncake traces,
kvcache-ai/Mooncake `FAST25-release/traces/`). `plan_sessions` turns requests into agent
sessions: new agents (sharing only a system prompt), next turns of a conversation, forks
(a new branch from the middle of another session's context) and pauses between turns.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

from ..errors import InvalidArgument

TRACE_BLOCK_TOKENS = 512
MAX_LINE_BYTES = 1 << 20
"""A trace line longer than this is refused before it is parsed."""
MAX_HASH_IDS = 65_536
"""At most this many blocks per request (32M tokens at 512 tokens a block)."""
MAX_TOKENS = 2**31 - 1
MAX_TIMESTAMP_MS = 2**53
MAX_HASH_ID = 2**63 - 1
TRACE_NAMES = ("mooncake_conversation_trace.jsonl", "mooncake_synthetic_trace.jsonl")


class TraceError(InvalidArgument):
    """A trace file is malformed; the message names the file and line."""


@dataclasses.dataclass(frozen=True, slots=True)
class TraceRequest:
    """One request of a trace: arrival time (ms), token counts, and its block chain."""

    timestamp: int
    input_length: int
    output_length: int
    hash_ids: tuple[int, ...]
    line: int = 0

    def full_blocks(self, block_tokens: int = TRACE_BLOCK_TOKENS) -> int:
        """How many of `hash_ids` are full blocks (a trailing partial block is not)."""
        return min(len(self.hash_ids), self.input_length // block_tokens)

    def block_tokens_at(self, position: int, block_tokens: int = TRACE_BLOCK_TOKENS) -> int:
        """Tokens held by the block at `position` (the last one may be partial)."""
        return max(0, min(block_tokens, self.input_length - position * block_tokens))


# ---- reading ------------------------------------------------------------------------------------
def _int_field(obj: dict[str, object], name: str, upper: int, where: str) -> int:
    value = obj.get(name)
    if type(value) is not int or not 0 <= value <= upper:
        raise TraceError(f"{where}: field {name!r} must be an integer in 0..{upper}, got {value!r:.40}")
    return value


def parse_trace_line(raw: bytes | str, where: str = "line",
                     block_tokens: int = TRACE_BLOCK_TOKENS) -> TraceRequest:
    """Parse and check one JSONL trace line; every bound is checked before the value is used."""
    if len(raw) > MAX_LINE_BYTES:
        raise TraceError(f"{where}: longer than {MAX_LINE_BYTES} bytes")
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TraceError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise TraceError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    timestamp = _int_field(obj, "timestamp", MAX_TIMESTAMP_MS, where)
    input_length = _int_field(obj, "input_length", MAX_TOKENS, where)
    output_length = _int_field(obj, "output_length", MAX_TOKENS, where)
    ids = obj.get("hash_ids")
    if not isinstance(ids, list):
        raise TraceError(f"{where}: field 'hash_ids' must be a list")
    if len(ids) > MAX_HASH_IDS:
        raise TraceError(f"{where}: {len(ids)} hash_ids exceed the bound {MAX_HASH_IDS}")
    if not all(type(h) is int and 0 <= h <= MAX_HASH_ID for h in ids):
        raise TraceError(f"{where}: every hash_id must be an integer in 0..{MAX_HASH_ID}")
    if len(ids) != math.ceil(input_length / block_tokens):
        raise TraceError(f"{where}: {len(ids)} hash_ids for {input_length} input tokens; expected "
                         f"ceil({input_length}/{block_tokens}) = {math.ceil(input_length / block_tokens)}")
    return TraceRequest(timestamp, input_length, output_length, tuple(ids))


def read_trace(path: str, limit: int | None = None,
               block_tokens: int = TRACE_BLOCK_TOKENS) -> Iterator[TraceRequest]:
    """Stream requests from a Mooncake JSONL trace; blank lines are skipped, malformed ones refused."""
    name = os.path.basename(path)
    count = 0
    with open(path, "rb") as f:
        lineno = 0
        while limit is None or count < limit:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) > MAX_LINE_BYTES:
                raise TraceError(f"{name} line {lineno}: longer than {MAX_LINE_BYTES} bytes")
            if not raw.strip():
                continue
            request = parse_trace_line(raw, f"{name} line {lineno}", block_tokens)
            yield dataclasses.replace(request, line=lineno)
            count += 1


def find_trace(name: str = TRACE_NAMES[0], cwd: str | None = None) -> str | None:
    """The shared trace file, looked up in ./shared/traces and ../shared/traces from the current
    directory and from the package's repository root; None when absent."""
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bases = [os.path.abspath(cwd or os.getcwd()), repo_root]
    for base in bases:
        for rel in ("shared/traces", "../shared/traces"):
            candidate = os.path.normpath(os.path.join(base, rel, name))
            if os.path.isfile(candidate):
                return candidate
    return None


# ---- hit ratio with an unbounded cache ------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class HitStats:
    references: int
    hits: int
    distinct: int

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.references if self.references else 0.0


def unbounded_hit_ratio(requests: Iterable[TraceRequest]) -> HitStats:
    """Block references that an infinite cache would serve (a block seen before is a hit)."""
    seen: set[int] = set()
    references = hits = 0
    for request in requests:
        for block in request.hash_ids:
            references += 1
            if block in seen:
                hits += 1
            else:
                seen.add(block)
    return HitStats(references, hits, len(seen))


# ---- synthetic generator --------------------------------------------------------------------------
@dataclasses.dataclass(slots=True)
class _Agent:
    chain: list[int]
    next_at: int
    turns_left: int


def synthetic_trace(
    requests: int = 300,
    seed: int = 0,
    system_prompts: int = 3,
    system_blocks: tuple[int, int] = (2, 6),
    agents: int = 8,
    turns: tuple[int, int] = (3, 12),
    growth_blocks: tuple[int, int] = (1, 3),
    fork_probability: float = 0.15,
    pause_probability: float = 0.25,
    block_tokens: int = TRACE_BLOCK_TOKENS,
) -> list[TraceRequest]:
    """A deterministic multi-agent trace of the Mooncake shape.

    Agents share one of a few system prompts, grow their context turn by turn, sometimes fork a
    sub-agent from their current context, and sometimes pause 1.5-10 minutes (a human approval or a
    slow tool) before the next turn; short gaps are 2-20 s. Each request's trailing partial block
    gets a fresh id, as in the traces. Requests come out in arrival order.
    """
    if requests < 0:
        raise InvalidArgument("requests must be non-negative")
    rng = random.Random(seed)
    next_id = 0

    def fresh(n: int) -> list[int]:
        nonlocal next_id
        ids = list(range(next_id, next_id + n))
        next_id += n
        return ids

    prompts = [fresh(rng.randint(*system_blocks)) for _ in range(max(1, system_prompts))]
    live = [_Agent(list(rng.choice(prompts)), rng.randint(0, 5_000), rng.randint(*turns))
            for _ in range(max(1, agents))]
    out: list[TraceRequest] = []
    while len(out) < requests:
        if not live:
            live.append(_Agent(list(rng.choice(prompts)), out[-1].timestamp + rng.randint(0, 2_000) if out else 0,
                               rng.randint(*turns)))
        agent = min(live, key=lambda a: a.next_at)
        agent.chain.extend(fresh(rng.randint(*growth_blocks)))
        partial = rng.randint(1, block_tokens - 1)
        ids = (*agent.chain, *fresh(1))
        out.append(TraceRequest(agent.next_at, len(agent.chain) * block_tokens + partial,
                                rng.randint(20, 600), ids, len(out) + 1))
        agent.turns_left -= 1
        if rng.random() < fork_probability and len(agent.chain) > 1:
            cut = rng.randint(1, len(agent.chain))
            live.append(_Agent(agent.chain[:cut], agent.next_at + rng.randint(100, 3_000), rng.randint(*turns)))
        pause = rng.randint(90_000, 600_000) if rng.random() < pause_probability else rng.randint(2_000, 20_000)
        agent.next_at += pause
        if agent.turns_left <= 0:
            live.remove(agent)
            live.append(_Agent(list(rng.choice(prompts)), agent.next_at, rng.randint(*turns)))
    out.sort(key=lambda r: (r.timestamp, r.line))
    return out


# ---- sessions -------------------------------------------------------------------------------------
TurnKind = Literal["new", "continue", "fork"]


@dataclasses.dataclass(frozen=True, slots=True)
class Turn:
    """One request replayed as a step of an agent session."""

    request: TraceRequest
    session: int
    kind: TurnKind
    parent: int | None = None
    """For a fork: the session it branches from."""
    shared: int = 0
    """Blocks already held by the session (continue) or taken from the parent (fork)."""
    resume_before: bool = False
    """The session was suspended for a pause and resumes with this turn."""
    suspend_after: bool = False
    """A pause follows this turn: the session is suspended (its blocks pinned) until its next turn."""


@dataclasses.dataclass(slots=True)
class _Session:
    chain_len: int
    last_turn: int
    last_time: int


def plan_sessions(
    requests: Sequence[TraceRequest],
    pause_ms: int = 60_000,
    block_tokens: int = TRACE_BLOCK_TOKENS,
    prompt_fanout: int = 4,
) -> list[Turn]:
    """Group requests into agent sessions.

    A request whose chain covers every full block of a session's last request is that session's
    next turn. One that leaves a session's chain before its end forks that session, unless the
    block where it leaves is a shared prompt: a block followed by `prompt_fanout` or more
    different blocks across the workload (in the conversation trace block 0, the system prompt,
    opens all 12,031 requests); such a request is a new agent on the shared prompt. A session
    whose next turn comes more than `pause_ms` later is suspended between the two turns.
    """
    fanout: dict[int, set[int]] = {}
    for request in requests:
        for block, child in zip(request.hash_ids, request.hash_ids[1:], strict=False):
            fanout.setdefault(block, set()).add(child)
    owner: dict[int, int] = {}
    sessions: list[_Session] = []
    turns: list[Turn] = []
    for index, request in enumerate(requests):
        ids = request.hash_ids
        shared = 0
        while shared < len(ids) and ids[shared] in owner:
            shared += 1
        full = request.full_blocks(block_tokens)
        kind: TurnKind = "new"
        parent: int | None = None
        session = len(sessions)
        if shared:
            other = owner[ids[shared - 1]]
            prev = sessions[other]
            if shared >= prev.chain_len > 0:
                kind, session = "continue", other
            elif len(fanout.get(ids[shared - 1], ())) < prompt_fanout and shared <= prev.chain_len:
                kind, parent = "fork", other
        resume = False
        if kind == "continue":
            taken = sessions[session].chain_len
            resume = request.timestamp - sessions[session].last_time > pause_ms
            if resume:
                last = sessions[session].last_turn
                turns[last] = dataclasses.replace(turns[last], suspend_after=True)
            sessions[session].chain_len = max(full, taken)
            sessions[session].last_turn, sessions[session].last_time = index, request.timestamp
        else:
            taken = shared if parent is not None else 0
            sessions.append(_Session(max(full, taken), index, request.timestamp))
        for block in ids:
            owner.setdefault(block, session)
        turns.append(Turn(request, session, kind, parent, taken, resume_before=resume))
    return turns


def close_order(turns: Sequence[Turn]) -> dict[int, list[int]]:
    """Sessions to close after each turn index (a fork parent may close after its child's turn)."""
    last_use: dict[int, int] = {}
    for index, turn in enumerate(turns):
        last_use[turn.session] = index
        if turn.parent is not None:
            last_use[turn.parent] = index
    out: dict[int, list[int]] = {}
    for session, index in sorted(last_use.items()):
        out.setdefault(index, []).append(session)
    return out


def select_sessions(requests: Sequence[TraceRequest], limit: int, pause_ms: int = 60_000,
                    block_tokens: int = TRACE_BLOCK_TOKENS) -> list[TraceRequest]:
    """The whole conversations of the first sessions (by start), with every turn, up to `limit`
    requests, in arrival order; forks of a selected session are kept when they fit."""
    turns = plan_sessions(requests, pause_ms, block_tokens)
    chosen: set[int] = set()
    by_session: dict[int, list[int]] = {}
    for index, turn in enumerate(turns):
        by_session.setdefault(turn.session, []).append(index)
    picked: list[int] = []
    for turn in turns:
        if len(picked) >= limit:
            break
        if turn.session in chosen:
            continue
        if turn.parent is not None and turn.parent not in chosen:
            continue
        members = by_session[turn.session]
        if len(picked) + len(members) > limit and picked:
            continue
        chosen.add(turn.session)
        picked.extend(members[: limit - len(picked)])
    return [requests[i] for i in sorted(picked)]


__all__ = [
    "HitStats", "MAX_HASH_IDS", "MAX_LINE_BYTES", "TRACE_BLOCK_TOKENS", "TRACE_NAMES", "TraceError",
    "TraceRequest", "Turn", "close_order", "find_trace", "parse_trace_line", "plan_sessions",
    "read_trace", "select_sessions", "synthetic_trace", "unbounded_hit_ratio",
]
