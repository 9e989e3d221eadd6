"""vLLM's secondary tier over memkv, built the way vLLM builds it, against a real `memkv serve`.

Runs where vLLM is installed (`tox -e vllm`); skipped elsewhere.
"""

from __future__ import annotations

import os

import pytest
from engine_process import engine_or_skip

from memkv.server.testing import ServerProcess

engine_or_skip("vllm.v1.kv_offload.tiering.base", "vllm")

import numpy as np
from engine_process import result_of, run_python
from vllm.v1.kv_offload.base import LookupResult

from memkv.integrations.engine_keys import UnpinnedHashSeed
from memkv.integrations.vllm import demo

pytestmark = pytest.mark.requirement("MKV-INT-004")


def test_the_entry_point_registers_the_tier_and_the_spec_builds_it(memkv_server: ServerProcess) -> None:
    tier, _ = demo.make_tier(memkv_server.url)
    try:
        assert type(tier).__name__ == "MemkvSecondaryTier" and tier.tier_type == "memkv"
    finally:
        tier.shutdown()
    manager = demo.offloading_spec(memkv_server.url).get_manager()  # vLLM's own tiering manager
    try:
        assert type(manager).__name__ == "TieringOffloadingManager"
        assert [type(t).__name__ for t in manager.secondary_tiers] == ["MemkvSecondaryTier"]
    finally:
        manager.shutdown()  # the secondary tiers, then the primary tier's shared file in /dev/shm
    assert not os.path.exists(f"/dev/shm/vllm_offload_{demo.ENGINE_ID}.mmap")


def test_store_lookup_load_byte_exact(memkv_server: ServerProcess) -> None:
    tier, primary = demo.make_tier(memkv_server.url)
    keys = [demo.prefix_key(50 + i) for i in range(3)]
    try:
        assert demo.lookup_all(tier, keys) == [LookupResult.MISS] * 3
        assert demo.store(tier, primary, keys[:2], first_slot=0, job_id=1).success
        tier.drain_jobs()
        result = demo.load(tier, keys[:2], first_slot=8, job_id=2)
        assert result.success and result.transfer_bytes == 2 * demo.CHUNK_BYTES
        assert np.array_equal(primary[8:10], primary[0:2])
        partial = demo.load(tier, keys, first_slot=10, job_id=3)
        assert not partial.success and set(partial.successful_keys) == set(keys[:2])
    finally:
        tier.shutdown()


def test_a_prefix_stored_by_one_process_is_loaded_byte_exact_by_another(memkv_server: ServerProcess) -> None:
    engine = ["-P", "-m", "memkv.integrations.vllm.demo"]
    assert result_of(run_python([*engine, "store", memkv_server.url, "5"])) == {
        "mode": "store", "tier": "MemkvSecondaryTier", "stored": True}
    assert result_of(run_python([*engine, "load", memkv_server.url, "5"])) == {
        "mode": "load", "tier": "MemkvSecondaryTier", "hits": 5, "loaded": True, "exact": 5}


def test_a_server_killed_mid_run_gives_misses_never_a_stall(memkv_server: ServerProcess) -> None:
    tier, primary = demo.make_tier(memkv_server.url, deadline_s=1.0)
    keys = [demo.prefix_key(80 + i) for i in range(3)]
    try:
        assert demo.store(tier, primary, keys, first_slot=0, job_id=1).success
        memkv_server.kill()
        assert demo.lookup_all(tier, [demo.prefix_key(90)]) == [LookupResult.MISS]
        assert not demo.load(tier, keys, first_slot=8, job_id=2).success
        assert not demo.store(tier, primary, keys, first_slot=0, job_id=3).success
        assert demo.lookup_all(tier, keys) == [LookupResult.MISS] * 3  # failed loads are misses now
        tier.drain_jobs()
    finally:
        tier.shutdown()


@pytest.mark.requirement("MKV-INT-003")
def test_a_per_process_seeded_hash_without_a_pinned_seed_refuses_to_start(memkv_server: ServerProcess,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    config = {**demo.tier_config(memkv_server.url), "hash_algorithm": "xxhash"}
    from vllm.v1.kv_offload.tiering.factory import SecondaryTierFactory

    demo.load_general_plugins()
    with pytest.raises(UnpinnedHashSeed, match="PYTHONHASHSEED"):
        SecondaryTierFactory.create_secondary_tier(config, memoryview(np.zeros((2, 16), dtype=np.uint8)),
                                                   demo.offloading_spec(memkv_server.url))
