"""LMCache over memkv: LMCache's own harness and the contract cases, against a real `memkv serve`.

Runs where LMCache is installed (`tox -e lmcache`); skipped elsewhere.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from engine_process import engine_or_skip

from memkv.server.testing import ServerProcess

engine_or_skip("lmcache", "lmcache")

import torch
from engine_process import result_of, run_python

from memkv.integrations.engine_keys import UnpinnedHashSeed
from memkv.integrations.lmcache import demo

pytestmark = pytest.mark.requirement("MKV-INT-004")


def _score(output: str, pattern: str) -> tuple[int, int]:
    match = re.search(pattern + r"\D*(\d+)/(\d+)", output)
    assert match, f"no {pattern!r} line in:\n{output[-4000:]}"
    return int(match.group(1)), int(match.group(2))


def test_lmcache_harness_l2_adapter(memkv_server: ServerProcess) -> None:
    spec = json.dumps({"type": "plugin", "module_path": "memkv.integrations.lmcache.l2", "class_name": "MemkvL2Adapter",
                       "adapter_params": {"url": memkv_server.url, "namespace": "harness"}})
    output = run_python(["-m", "lmcache.v1.basic_check", "--mode", "test_l2_adapter", "--l2-adapter", spec])
    assert "MemkvL2Adapter" in output and "Test Failed" not in output, output[-4000:]
    assert "Validation: 5/5 correctly absent" in output and "Batch store OK" in output, output[-4000:]
    assert "Validation: 5/5 found" in output, output[-4000:]
    assert _score(output, r"Validation \(loaded\)") == (5, 5)
    assert _score(output, r"Validation \(content\)") == (5, 5)


def test_lmcache_harness_remote_connector(memkv_server: ServerProcess, tmp_path: Path) -> None:
    config = tmp_path / "lmcache.yaml"
    config.write_text(
        "chunk_size: 256\nlocal_cpu: false\nmax_local_cpu_size: 1\nremote_serde: naive\n"
        f'remote_url: "{memkv_server.url}/lmcache"\nremote_storage_plugins: ["memkv"]\n'
        "extra_config:\n"
        "  remote_storage_plugin.memkv.module_path: memkv.integrations.lmcache.remote\n"
        "  remote_storage_plugin.memkv.class_name: MemkvConnectorAdapter\n")
    output = run_python(["-m", "lmcache.v1.basic_check", "--mode", "test_remote"],
                        env={"LMCACHE_CONFIG_FILE": str(config)})
    assert "Test Failed" not in output, output[-4000:]
    scores = re.findall(r"Validation[^:]*: (\d+)/(\d+) passed", output)
    assert len(scores) == 5 and all(a == b == "5" for a, b in scores), output[-4000:]
    assert _score(output, r"Validation \(content correct\)") == (5, 5)


def test_a_prefix_stored_by_one_process_is_loaded_byte_exact_by_another(memkv_server: ServerProcess) -> None:
    engine = ["-P", "-m", "memkv.integrations.lmcache.demo"]
    stored = result_of(run_python([*engine, "store", memkv_server.url, "6"]))
    assert stored == {"mode": "store", "stored": True}
    loaded = result_of(run_python([*engine, "load", memkv_server.url, "6"]))
    assert loaded == {"mode": "load", "found": 6, "loaded": 6, "exact": 6}


def test_a_server_killed_mid_run_gives_misses_never_a_stall(memkv_server: ServerProcess) -> None:
    count = 4
    buffer = torch.zeros(2 * count * demo.ELEMENTS, dtype=torch.float32)
    chunks = [buffer[i * demo.ELEMENTS:(i + 1) * demo.ELEMENTS] for i in range(2 * count)]
    adapter = demo.make_adapter(memkv_server.url, buffer, deadline_s=1.0)
    keys = [demo.prefix_key(100 + i) for i in range(count)]
    try:
        for i in range(count):
            chunks[i].copy_(demo.expected_chunk(i))
        task = adapter.submit_store_task(keys, [demo.memory_obj(c) for c in chunks[:count]])
        assert demo.wait(adapter.get_store_event_fd(), 30)
        assert adapter.pop_completed_store_tasks()[task].is_successful()

        memkv_server.kill()

        task = adapter.submit_lookup_and_lock_task(keys, {})
        assert demo.wait(adapter.get_lookup_and_lock_event_fd(), 30), "lookup stalled"
        found = adapter.query_lookup_and_lock_result(task)
        assert [found.test(i) for i in range(count)] == [False] * count
        task = adapter.submit_load_task(keys, [demo.memory_obj(c) for c in chunks[count:]])
        assert demo.wait(adapter.get_load_event_fd(), 30), "load stalled"
        loaded = adapter.query_load_result(task)
        assert [loaded.test(i) for i in range(count)] == [False] * count
        assert all(not c.any() for c in chunks[count:]), "a failed load wrote into the engine's buffers"
        task = adapter.submit_store_task(keys, [demo.memory_obj(c) for c in chunks[:count]])
        assert demo.wait(adapter.get_store_event_fd(), 30), "store stalled"
        assert not adapter.pop_completed_store_tasks()[task].is_successful()
        assert adapter.report_status()["is_healthy"] is False
    finally:
        adapter.close()


@pytest.mark.requirement("MKV-INT-003")
def test_builtin_hashing_without_a_pinned_seed_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from memkv.integrations.lmcache.l2 import MemkvL2Adapter, MemkvL2AdapterConfig

    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    config = MemkvL2AdapterConfig.from_dict({"url": "memkv+tcp://127.0.0.1:1", "hash_algorithm": "builtin"})
    with pytest.raises(UnpinnedHashSeed, match="PYTHONHASHSEED"):
        MemkvL2Adapter(config)
