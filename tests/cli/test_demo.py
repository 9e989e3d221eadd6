"""`memkv demo` end to end on small stores (memkv.cli.demo)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from memkv.buffers import aligned_buffer
from memkv.cli.demo import DemoConfig, check_payload, fill_payload, format_report, run_demo
from memkv.errors import InvalidArgument
from memkv.plan.workload import synthetic_trace

KEY_A, KEY_B = bytes(range(16)), bytes(range(1, 17))


def _config(store: Path, **overrides: Any) -> DemoConfig:
    options: dict[str, Any] = {"store": str(store), "capacity": 64 * 1024 * 1024, "requests": 60,
                               "block_size": 64 * 1024}
    options.update(overrides)
    return DemoConfig(**options)


def _check_consistent(report: dict[str, Any], config: DemoConfig) -> None:
    b, by, v, s = report["blocks"], report["bytes"], report["verification"], report["sessions"]
    assert b["hits"] + b["misses"] == b["references"] > 0
    assert b["hit_ratio"] == pytest.approx(b["hits"] / b["references"])
    assert v["ok"] and v["failures"] == 0 and v["read_errors"] == 0
    assert v["blocks_verified"] == b["hits"]
    assert by["reloaded"] == v["bytes_verified"] == b["hits"] * config.block_size
    assert by["written"] == b["stored"] * config.block_size
    assert b["stored"] + b["put_refused"] == b["misses"]
    assert by["reloaded_full_size"] == b["hits"] * report["model"]["full_block_bytes"]
    p = report["prefill"]
    assert 0 <= p["tokens_not_recomputed"] <= p["tokens_total"]
    assert p["gpu_seconds_saved"] == pytest.approx(p["tokens_not_recomputed"] / p["assumed_tokens_per_s"])
    assert s["agents"] + s["turns"] + s["forked"] == report["workload"]["requests"]
    assert s["closed"] == report["workload"]["sessions"]
    assert s["resumed"] <= s["suspended"]
    assert report["throughput"]["wall_s"] > 0


def test_payload_is_a_function_of_the_key() -> None:
    a, b, scratch = aligned_buffer(4096), aligned_buffer(4096), aligned_buffer(4096)
    fill_payload(KEY_A, a)
    fill_payload(KEY_A, b)
    assert bytes(a) == bytes(b)
    assert check_payload(KEY_A, a, scratch)
    assert not check_payload(KEY_B, a, scratch)
    a[100] ^= 1
    assert not check_payload(KEY_A, a, scratch)


def test_payload_odd_size() -> None:
    a, scratch = bytearray(13), bytearray(13)
    fill_payload(KEY_A, memoryview(a))
    assert check_payload(KEY_A, memoryview(a), memoryview(scratch))
    longer = bytearray(16)
    fill_payload(KEY_A, memoryview(longer))
    assert longer[:13] == a


def test_demo_synthetic_end_to_end_and_reuse(tmp_path: Path) -> None:
    config = _config(tmp_path / "store")
    first = run_demo(config)
    _check_consistent(first, config)
    assert first["workload"]["source"] == "synthetic"
    assert not first["store"]["reused"] and first["store"]["blocks_at_start"] == 0
    assert first["blocks"]["hits"] > 0 and first["blocks"]["stored"] > 0
    assert first["sessions"]["suspended"] > 0 and first["sessions"]["forked"] > 0
    assert first["sessions"]["resumed_blocks"] == first["sessions"]["resumed_blocks_expected"]
    json.dumps(first)  # machine output is plain JSON
    assert "every reloaded byte matched" in format_report(first)

    second = run_demo(config)
    _check_consistent(second, config)
    assert second["store"]["reused"]
    assert second["store"]["blocks_at_start"] == first["store"]["blocks_at_end"]
    assert second["blocks"]["hits"] == second["blocks"]["references"]  # all stored by the first run
    assert second["blocks"]["stored"] == 0

    fresh = run_demo(_config(tmp_path / "store", fresh=True))
    assert fresh["store"]["blocks_at_start"] == 0 and not fresh["store"]["reused"]
    assert fresh["blocks"]["hits"] == first["blocks"]["hits"]


def test_demo_small_store_evicts_and_still_verifies(tmp_path: Path) -> None:
    config = _config(tmp_path / "store", capacity=4 * 1024 * 1024, requests=80)
    report = run_demo(config)
    _check_consistent(report, config)
    assert report["blocks"]["evictions"] > 0
    assert report["store"]["blocks_at_end"] * config.block_size <= 4 * 1024 * 1024


def test_demo_replays_a_trace_file(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    lines = [json.dumps({"timestamp": r.timestamp, "input_length": r.input_length,
                         "output_length": r.output_length, "hash_ids": list(r.hash_ids)})
             for r in synthetic_trace(80, seed=5)]
    trace.write_text("\n".join(lines) + "\n")
    config = _config(tmp_path / "store", trace=str(trace), requests=40)
    report = run_demo(config)
    _check_consistent(report, config)
    assert report["workload"]["source"] == "trace"
    assert report["workload"]["trace_requests"] == 80
    assert report["workload"]["requests"] <= 40


def test_demo_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="unknown model"):
        run_demo(_config(tmp_path / "s", model="gpt-9"))
    with pytest.raises(InvalidArgument, match="multiple of 8"):
        run_demo(_config(tmp_path / "s", block_size=1001))
    with pytest.raises(InvalidArgument, match="does not exist"):
        run_demo(_config(tmp_path / "s", trace=str(tmp_path / "missing.jsonl")))
