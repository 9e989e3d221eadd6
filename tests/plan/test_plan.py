"""`memkv plan`: the exactness contract, chain order in the simulator, the store and the simulator
evicting alike, and plans of the two shared traces (skipped only when ../shared/traces is absent)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from helpers_store import KiB, key, open_engine, payload

from memkv.blocks import BlockMeta
from memkv.cli.main import main
from memkv.plan import PlanOptions, SimConfig, make_plan, simulate
from memkv.plan.workload import TRACE_NAMES, TraceRequest, find_trace, read_trace, synthetic_trace
from memkv.transport import PutItem

HAND_TRACE = [[1, 2, 3], [1, 2, 4], [1, 5], [1, 2, 3]]
"""By hand, capacity 3, LRU: r1 misses 1,2,3 (cache 1,2,3); r2 hits 1,2, touches them, stores 4
evicting 3 (cache 1,2,4); r3 hits 1, stores 5 evicting 2 (cache 4,1,5); r4 hits 1, misses 2 and 3.
4 hits of 11 references. Chain order instead evicts 3 then 4 (the tails), so r4 also hits 2: 5/11."""


def _write_trace(path: Path, chains: list[list[int]]) -> Path:
    lines = [json.dumps({"timestamp": 1000 * i, "input_length": 512 * len(ids), "output_length": 10, "hash_ids": ids})
             for i, ids in enumerate(chains)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _plan_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["plan", *args, "--json"]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def _exact_lru(requests: list[TraceRequest], capacity: int) -> float:
    """Block-level LRU as the issue defines it, written with a plain list."""
    cache: list[int] = []
    hits = refs = 0
    for request in requests:
        refs += len(request.hash_ids)
        hits += sum(1 for h in request.hash_ids if h in cache)
        for h in request.hash_ids:
            if h in cache:
                cache.remove(h)
            elif len(cache) >= capacity:
                cache.pop(0)
            cache.append(h)
    return hits / refs


def test_exactness_contract_on_a_trace_computed_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = _write_trace(tmp_path / "t.jsonl", HAND_TRACE)
    plan = _plan_json(capsys, "--trace", str(trace), "--capacity-blocks", "3", "--policy", "lru")
    assert plan["block_hit_ratio"] == 4 / 11
    requests = list(read_trace(str(trace)))
    assert simulate(requests, SimConfig(3, "chain")).block_hit_ratio == 5 / 11


@pytest.mark.parametrize("capacity", [1, 7, 40, 200])
def test_lru_equals_a_plain_list_simulation(capacity: int) -> None:
    requests = synthetic_trace(250, seed=3)
    assert simulate(requests, SimConfig(capacity, "lru")).block_hit_ratio == _exact_lru(requests, capacity)


def test_chain_policy_never_evicts_a_block_before_one_chained_after_it() -> None:
    """In the simulator, chain order keeps every stored chain whole: block hits are prefix hits."""
    requests = synthetic_trace(400, seed=9)
    for capacity in (5, 30, 120):
        chain = simulate(requests, SimConfig(capacity, "chain"))
        assert chain.block_hits == chain.prefix_hits
        lru = simulate(requests, SimConfig(capacity, "lru"))
        assert lru.block_hits >= lru.prefix_hits


@pytest.mark.requirement("MKV-CAP-006", "MKV-CAP-007")
def test_store_and_simulator_evict_the_same_blocks(store_dir: Path) -> None:
    """A trace replayed through the store (lookup, then get or put each block in order) and through
    the simulator evicts the same blocks in the same order."""
    requests = synthetic_trace(120, seed=4)
    capacity = 40
    unit = 64 * KiB
    engine = open_engine(store_dir, capacity=(capacity + 1) * unit, unit=unit)
    evicted: list[int] = []
    remove = engine._commit_removal

    def recording_removal(block_ids: Sequence[tuple[str, bytes]], also: Callable[[], None] | None = None) -> None:
        evicted.extend(int.from_bytes(block_id[1], "big") - 1 for block_id in block_ids)
        remove(block_ids, also)

    engine._commit_removal = recording_removal  # type: ignore[method-assign]
    try:
        for request in requests:
            keys = [key(h + 1) for h in request.hash_ids]
            engine.lookup("ns", keys)
            parent: bytes | None = None
            for k, there in zip(keys, engine.exists("ns", keys), strict=True):
                if there:
                    assert engine.get_into("ns", [k], [bytearray(unit)])[0].ok
                else:
                    meta = BlockMeta() if parent is None else BlockMeta(parent=parent)
                    assert engine.put("ns", [PutItem(k, payload(1, unit - 7), meta)])[0].ok
                parent = k
    finally:
        engine.close()
    sim = simulate(requests, SimConfig(capacity, "chain"), record_evictions=True)
    assert sim.evicted and evicted == sim.evicted


def test_ttl_and_pause_expire_blocks() -> None:
    requests = [TraceRequest(t, 1024, 1, (1, 2)) for t in (0, 100_000, 500_000)]
    assert simulate(requests, SimConfig(None, "chain", ttl_s=300)).block_hits == 2
    paused = simulate(requests, SimConfig(None, "chain", ttl_s=300, pause_s=600))
    assert paused.block_hits == 0 and paused.expirations == 4


def test_agents_share_only_the_shared_prefix() -> None:
    requests = [TraceRequest(0, 1536, 1, (1, 2, 3))]
    one = simulate(requests, SimConfig(None, agents=3, shared_blocks=1))
    assert one.references == 9 and one.block_hits == 2  # agents 2 and 3 reuse block 1 only


def test_plan_economics_and_claim_on_a_small_trace() -> None:
    requests = synthetic_trace(300, seed=1)
    plan = make_plan(requests, PlanOptions(SimConfig(50), sweep_points=3))
    e = plan["economics"]
    assert e["usd_per_year"] == pytest.approx(e["gpu_hours_per_year"] * 3.0)
    assert e["reload_bar_bytes_per_s_per_gpu"] == 2500 * 327680
    assert e["bytes_reloaded"] == plan["tokens_avoided"] * 327680
    assert plan["claim"]["usd_per_year"] == pytest.approx(128 * (1 - 0.5 / 0.9) * 8760 * 4.0)
    assert plan["recommendation"]["tier"] in ("GPU memory only", "host DRAM", "NVMe tier", "not worth it")
    assert {row["policy"] for row in plan["sweep"]} == {"lru", "chain"}
    assert plan["sensitivity"][0]["swing_usd_per_year"] >= plan["sensitivity"][-1]["swing_usd_per_year"]


def test_workload_without_reuse_is_not_worth_it() -> None:
    requests = [TraceRequest(i * 1000, 512 * 3, 1, (3 * i, 3 * i + 1, 3 * i + 2)) for i in range(50)]
    plan = make_plan(requests, PlanOptions(sweep_points=0, sensitivity=False))
    assert plan["recommendation"]["tier"] == "not worth it"


def test_html_without_matplotlib_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    trace = _write_trace(tmp_path / "t.jsonl", HAND_TRACE)
    assert main(["plan", "--trace", str(trace), "--html", str(tmp_path / "r.html")]) == 2
    assert "pip install 'memkv[plot]'" in capsys.readouterr().err


def test_html_report_has_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    trace = _write_trace(tmp_path / "t.jsonl", HAND_TRACE * 5)
    assert main(["plan", "--trace", str(trace), "--sweep", "3", "--html", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "memkv plan" in page


@pytest.mark.parametrize("name", TRACE_NAMES)
def test_plan_runs_on_the_shared_traces(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    trace = find_trace(name)
    if trace is None:
        pytest.skip("../shared/traces is absent")
    plan = _plan_json(capsys, "--trace", trace, "--capacity-blocks", "20000")
    unbounded = plan["trace"]["unbounded_block_hit_ratio"]
    assert unbounded == pytest.approx({TRACE_NAMES[0]: 0.366, TRACE_NAMES[1]: 0.640}[name], abs=0.001)
    assert 0 < plan["prefix_hit_ratio"] == plan["block_hit_ratio"] < unbounded
    assert plan["economics"]["usd_per_year"] > 0 and plan["sweep"] and plan["sensitivity"]
    assert plan["recommendation"]["reason"]


def test_demo_prices_prefill_with_the_plan_catalog() -> None:
    from memkv.cli.demo import MODELS
    from memkv.plan.catalog import assumptions
    from memkv.plan.economics import prefill_value

    a = assumptions("llama-3.1-70b")
    assert MODELS["llama-3.1-70b"].bytes_per_token == a.model.bytes_per_token == 327680
    assert MODELS["llama-3.1-70b"].prefill_tokens_per_s == a.prefill_tokens_per_s
    value = prefill_value(9_000_000, a)
    assert value["gpu_hours_saved"] == pytest.approx(1.0)
    assert value["usd_saved"] == pytest.approx(a.usd_per_gpu_hour)
    assert "research" not in MODELS["llama-3.1-70b"].prefill_source
