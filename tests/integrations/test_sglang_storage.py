"""SGLang HiCache L3 over memkv, created the way SGLang creates a dynamic backend, against a real server.

Runs where SGLang is installed (`tox -e sglang`); skipped elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_process import engine_or_skip

from memkv.server.testing import ServerProcess

engine_or_skip("sglang.srt.mem_cache.hicache_storage", "sglang")

import sglang_worker
import torch
from engine_process import result_of, run_python

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.requirement("MKV-INT-004")


def test_store_lookup_load_byte_exact(memkv_server: ServerProcess) -> None:
    storage = sglang_worker.make_storage(memkv_server.url)
    keys = [sglang_worker.page_key(40 + i) for i in range(3)]
    try:
        assert type(storage).__name__ == "MemkvHiCacheStorage"
        assert storage.batch_exists(keys) == 0 and not storage.exists(keys[0])
        assert storage.set(keys[0], sglang_worker.expected_page(0))
        assert storage.batch_set(keys[1:2], [sglang_worker.expected_page(1)])
        assert storage.batch_exists(keys) == 2 and storage.exists(keys[1])
        target = torch.zeros(sglang_worker.PAGE_ELEMENTS, dtype=torch.bfloat16)
        assert storage.get(keys[1], target) is target and torch.equal(target, sglang_worker.expected_page(1))
        raw = storage.get(keys[0])
        assert raw is not None and torch.equal(raw.view(torch.bfloat16), sglang_worker.expected_page(0))
        assert storage.get(keys[2]) is None
    finally:
        storage.close()


def test_a_prefix_stored_by_one_process_is_loaded_byte_exact_by_another(memkv_server: ServerProcess) -> None:
    worker = str(HERE / "sglang_worker.py")
    assert result_of(run_python([worker, "store", memkv_server.url, "5"])) == {
        "mode": "store", "storage": "MemkvHiCacheStorage", "stored": True}
    assert result_of(run_python([worker, "load", memkv_server.url, "5"])) == {
        "mode": "load", "storage": "MemkvHiCacheStorage", "prefix": 5, "exact": 5}


def test_a_server_killed_mid_run_gives_misses_never_a_stall(memkv_server: ServerProcess) -> None:
    storage = sglang_worker.make_storage(memkv_server.url, deadline_s=1.0)
    keys = [sglang_worker.page_key(70 + i) for i in range(2)]
    try:
        assert storage.batch_set(keys, [sglang_worker.expected_page(i) for i in range(2)])
        memkv_server.kill()
        assert storage.batch_exists(keys) == 0
        target = torch.zeros(sglang_worker.PAGE_ELEMENTS, dtype=torch.bfloat16)
        assert storage.get(keys[0], target) is None and not target.any()
        assert not storage.batch_set(keys, [sglang_worker.expected_page(i) for i in range(2)])
    finally:
        storage.close()
