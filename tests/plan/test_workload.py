"""The trace reader, the synthetic generator and the session planner (memkv.plan.workload)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memkv.errors import ErrorCode, InvalidArgument
from memkv.plan.workload import (
    MAX_HASH_IDS,
    MAX_LINE_BYTES,
    TRACE_NAMES,
    TraceError,
    TraceRequest,
    find_trace,
    parse_trace_line,
    plan_sessions,
    read_trace,
    select_sessions,
    synthetic_trace,
    unbounded_hit_ratio,
)


def _line(**fields: object) -> str:
    base: dict[str, object] = {"timestamp": 0, "input_length": 1000, "output_length": 5, "hash_ids": [0, 1]}
    base.update(fields)
    return json.dumps(base)


def test_parse_good_line() -> None:
    request = parse_trace_line(_line())
    assert request == TraceRequest(0, 1000, 5, (0, 1))
    assert request.full_blocks() == 1
    assert request.block_tokens_at(0) == 512 and request.block_tokens_at(1) == 488


@pytest.mark.parametrize("raw, fragment", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (_line(timestamp=-1), "'timestamp'"),
    (_line(input_length=True), "'input_length'"),
    (_line(output_length="5"), "'output_length'"),
    (json.dumps({"timestamp": 0, "input_length": 1, "output_length": 1}), "'hash_ids' must be a list"),
    (_line(hash_ids=[0, -1]), "every hash_id"),
    (_line(hash_ids=[0, 2**64]), "every hash_id"),
    (_line(hash_ids=[0, 1.5]), "every hash_id"),
    (_line(hash_ids=[0, 1, 2]), "expected ceil(1000/512) = 2"),
    (_line(hash_ids=list(range(MAX_HASH_IDS + 1))), "exceed the bound"),
])
def test_malformed_lines_are_refused(raw: str, fragment: str) -> None:
    with pytest.raises(TraceError, match="here") as info:
        parse_trace_line(raw, "here")
    assert fragment in info.value.message
    assert info.value.code is ErrorCode.INVALID_ARGUMENT


def test_reader_names_the_line_and_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(_line() + "\n\n" + _line(timestamp=5) + "\n" + '{"timestamp": 1}\n')
    reader = read_trace(str(path))
    assert next(reader).line == 1
    assert next(reader).line == 3
    with pytest.raises(TraceError, match=r"t.jsonl line 4: field 'input_length'"):
        next(reader)


def test_reader_bounds_line_length_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    path.write_bytes(_line().encode() + b"\n" + b"x" * (MAX_LINE_BYTES + 10) + b"\n")
    with pytest.raises(TraceError, match="line 2: longer than"):
        list(read_trace(str(path)))


def test_reader_limit(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(_line(timestamp=i) for i in range(10)) + "\n")
    assert [r.timestamp for r in read_trace(str(path), limit=3)] == [0, 1, 2]


def test_unbounded_hit_ratio_small() -> None:
    reqs = [TraceRequest(0, 1024, 1, (0, 1)), TraceRequest(1, 1536, 1, (0, 1, 2)), TraceRequest(2, 512, 1, (3,))]
    stats = unbounded_hit_ratio(reqs)
    assert (stats.references, stats.hits, stats.distinct) == (6, 2, 4)
    assert stats.hit_ratio == pytest.approx(2 / 6)


@pytest.mark.parametrize("name, references, distinct, ratio", [
    ("mooncake_conversation_trace.jsonl", 288_500, 182_790, 0.366),
    ("mooncake_synthetic_trace.jsonl", 121_877, 43_924, 0.640),
])
def test_trace_unbounded_hit_ratio_matches_readme(name: str, references: int, distinct: int, ratio: float) -> None:
    path = find_trace(name)
    if path is None:
        pytest.skip(f"{name} is not in ../shared/traces")
    stats = unbounded_hit_ratio(read_trace(path))
    assert (stats.references, stats.distinct) == (references, distinct)
    assert round(stats.hit_ratio, 3) == ratio


def test_find_trace_looks_in_shared_traces(tmp_path: Path) -> None:
    (tmp_path / "shared" / "traces").mkdir(parents=True)
    target = tmp_path / "shared" / "traces" / TRACE_NAMES[0]
    target.write_text(_line() + "\n")
    assert find_trace(TRACE_NAMES[0], cwd=str(tmp_path)) == str(target)
    assert find_trace("no-such-trace.jsonl", cwd=str(tmp_path)) is None


def test_synthetic_is_deterministic_and_well_formed() -> None:
    a, b = synthetic_trace(150, seed=7), synthetic_trace(150, seed=7)
    assert a == b
    assert a != synthetic_trace(150, seed=8)
    assert len(a) == 150
    assert [r.timestamp for r in a] == sorted(r.timestamp for r in a)
    for r in a:
        assert len(r.hash_ids) == -(-r.input_length // 512)
    # a block id always sits at the same position behind the same prefix (prefix-chain property)
    parent: dict[int, int | None] = {}
    for r in a:
        for pos, block in enumerate(r.hash_ids):
            prev = r.hash_ids[pos - 1] if pos else None
            assert parent.setdefault(block, prev) == prev
    assert 0.3 < unbounded_hit_ratio(a).hit_ratio < 0.95


def test_synthetic_has_the_multi_agent_shape() -> None:
    turns = plan_sessions(synthetic_trace(200))
    kinds = {t.kind for t in turns}
    assert kinds == {"new", "continue", "fork"}
    assert sum(t.resume_before for t in turns) > 0
    assert sum(t.suspend_after for t in turns) == sum(t.resume_before for t in turns)


def test_plan_sessions_by_hand() -> None:
    reqs = [
        TraceRequest(0, 1100, 1, (0, 1, 2)),              # agent A: prompt 0, own blocks 1, 2 (partial)
        TraceRequest(1, 1100, 1, (0, 3, 4)),              # agent B shares only the prompt
        TraceRequest(2, 1100, 1, (0, 5, 6)),              # agent C
        TraceRequest(3, 1100, 1, (0, 7, 8)),              # agent D: block 0 now has 4 continuations
        TraceRequest(5_000, 1600, 1, (0, 1, 9, 10)),      # A's next turn (its partial block 2 is redone)
        TraceRequest(6_000, 1600, 1, (0, 1, 11, 12)),     # leaves A at block 1: a fork of A
        TraceRequest(200_000, 2100, 1, (0, 1, 9, 13, 14)),  # A again after a long pause
    ]
    turns = plan_sessions(reqs, pause_ms=60_000)
    assert [t.kind for t in turns] == ["new", "new", "new", "new", "continue", "fork", "continue"]
    assert [t.session for t in turns] == [0, 1, 2, 3, 0, 4, 0]
    assert turns[4].shared == 2 and turns[5].parent == 0 and turns[5].shared == 2
    assert turns[4].suspend_after and turns[6].resume_before
    assert not any(t.suspend_after for i, t in enumerate(turns) if i != 4)


def test_select_sessions_keeps_whole_conversations() -> None:
    reqs = synthetic_trace(300, seed=3)
    picked = select_sessions(reqs, 60)
    assert 0 < len(picked) <= 60
    assert [r.timestamp for r in picked] == sorted(r.timestamp for r in picked)
    turns = plan_sessions(picked)
    # every continued session starts inside the selection
    started = set()
    for t in turns:
        if t.kind == "continue":
            assert t.session in started
        started.add(t.session)


def test_synthetic_rejects_negative_count() -> None:
    with pytest.raises(InvalidArgument):
        synthetic_trace(-1)
