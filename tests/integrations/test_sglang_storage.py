"""SGLang HiCache L3 over memkv, created the way SGLang creates a dynamic backend, against a real server.

Runs where SGLang is installed (`tox -e sglang`); skipped elsewhere. The v1 page calls run in
engine processes over SGLang's real host KV pool (sglang_worker.py, sglang_host_pool.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from engine_process import engine_or_skip

from memkv.server.testing import ServerProcess

engine_or_skip("sglang.srt.mem_cache.hicache_storage", "sglang")

import torch
from engine_process import result_of, run_python

from memkv.integrations.sglang import demo

WORKER = str(Path(__file__).resolve().parent / "sglang_worker.py")
pytestmark = pytest.mark.requirement("MKV-INT-004")


def test_store_lookup_load_byte_exact(memkv_server: ServerProcess) -> None:
    storage = demo.make_storage(memkv_server.url)
    keys = [demo.page_key(40 + i) for i in range(3)]
    try:
        assert type(storage).__name__ == "MemkvHiCacheStorage"
        assert storage.batch_exists(keys) == 0 and not storage.exists(keys[0])
        assert storage.set(keys[0], demo.expected_page(0))
        assert storage.batch_set(keys[1:2], [demo.expected_page(1)])
        assert storage.batch_exists(keys) == 2 and storage.exists(keys[1])
        target = torch.zeros(demo.PAGE_ELEMENTS, dtype=torch.bfloat16)
        assert storage.get(keys[1], target) is target and torch.equal(target, demo.expected_page(1))
        raw = storage.get(keys[0])
        assert raw is not None and torch.equal(raw.view(torch.bfloat16), demo.expected_page(0))
        assert storage.get(keys[2]) is None
    finally:
        storage.close()


def test_a_prefix_stored_by_one_process_is_loaded_byte_exact_by_another(memkv_server: ServerProcess) -> None:
    engine = ["-P", "-m", "memkv.integrations.sglang.demo"]
    assert result_of(run_python([*engine, "store", memkv_server.url, "5"])) == {
        "mode": "store", "storage": "MemkvHiCacheStorage", "stored": True}
    assert result_of(run_python([*engine, "load", memkv_server.url, "5"])) == {
        "mode": "load", "storage": "MemkvHiCacheStorage", "prefix": 5, "exact": 5}


def test_a_server_killed_mid_run_gives_misses_never_a_stall(memkv_server: ServerProcess) -> None:
    storage = demo.make_storage(memkv_server.url, deadline_s=1.0)
    keys = [demo.page_key(70 + i) for i in range(2)]
    try:
        assert storage.batch_set(keys, [demo.expected_page(i) for i in range(2)])
        memkv_server.kill()
        assert storage.batch_exists(keys) == 0
        target = torch.zeros(demo.PAGE_ELEMENTS, dtype=torch.bfloat16)
        assert storage.get(keys[0], target) is None and not target.any()
        assert not storage.batch_set(keys, [demo.expected_page(i) for i in range(2)])
    finally:
        storage.close()


def test_side_pools_of_hybrid_models_are_refused_when_registered(memkv_server: ServerProcess) -> None:
    storage = demo.make_storage(memkv_server.url)
    try:
        with pytest.raises(NotImplementedError, match="hybrid models"):
            storage.register_mem_host_pool_v2(object(), "mamba")
        with pytest.raises(NotImplementedError, match="side pools"):
            storage.batch_exists_v2([demo.page_key(0)])
    finally:
        storage.close()


@pytest.mark.requirement("MKV-INT-005")
@pytest.mark.parametrize("layout", ["page_first", "layer_first"])
def test_v1_pages_stored_from_one_host_pool_load_byte_exact_into_another(memkv_server: ServerProcess,
                                                                         layout: str) -> None:
    stored = result_of(run_python([WORKER, "store", memkv_server.url, "6", layout]))
    assert stored == {"mode": "store", "storage": "MemkvHiCacheStorage", "pool": "MHATokenToKVPoolHost", "stored": 6}
    loaded = result_of(run_python([WORKER, "load", memkv_server.url, "6", layout]))
    assert loaded == {"mode": "load", "storage": "MemkvHiCacheStorage", "pool": "MHATokenToKVPoolHost",
                      "prefix": 6, "loaded": 6, "exact": 6}


@pytest.mark.requirement("MKV-INT-005")
def test_v1_pages_with_the_server_killed_mid_run_are_misses_within_the_deadline(
        memkv_server: ServerProcess) -> None:
    engine = subprocess.Popen([sys.executable, WORKER, "outage", memkv_server.url, "3"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONHASHSEED": "0"})
    assert engine.stdin is not None and engine.stdout is not None
    lines: list[str] = []
    try:
        for line in engine.stdout:
            lines.append(line)
            if line.strip() == "STORED":
                break
        memkv_server.kill()
        engine.stdin.write("go\n")
        engine.stdin.close()
        output = "".join(lines) + engine.stdout.read()
        assert engine.wait(120) == 0, output[-4000:]
    finally:
        engine.kill()
    result = result_of(output)
    assert result["stored"] == 3 and result["prefix"] == 0 and result["loaded"] == 0, result
    assert result["untouched"] is True and result["stored_after_kill"] == 0, result
    # the first call without a server costs at most its deadline (1 s); later ones answer at once
    assert isinstance(result["seconds"], float) and result["seconds"] < 10, result
