"""vLLM's side of `memkv demo --engine vllm` and of the contract tests' vLLM processes.

`python -m memkv.integrations.vllm.demo store|load URL COUNT` is one scheduler-side process: it
loads vLLM's general plugins (memkv's entry point registers the tier type "memkv"), builds the
tier through vLLM's own `SecondaryTierFactory` over a primary CPU view, and stores or loads COUNT
chunks of a prefix every process derives alike; it prints a JSON line `RESULT {...}`.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np
import numpy.typing as npt
from vllm.plugins import load_general_plugins
from vllm.v1.kv_offload.base import LookupResult, ReqContext, ScheduleEndContext, make_offload_key
from vllm.v1.kv_offload.config import (
    OffloadingCacheConfig,
    OffloadingConfig,
    OffloadingGroupConfig,
    OffloadingModelConfig,
    OffloadingParallelConfig,
)
from vllm.v1.kv_offload.tiering.base import TransferJob
from vllm.v1.kv_offload.tiering.factory import SecondaryTierFactory
from vllm.v1.kv_offload.tiering.spec import TieringOffloadingSpec

CHUNK_BYTES = 16384
SLOTS = 16
ENGINE_ID = "memkv-demo"  # vLLM names the primary tier's shared file after it: /dev/shm/vllm_offload_<id>.mmap


def tier_config(url: str, deadline_s: float = 2.0) -> dict[str, Any]:
    return {"type": "memkv", "url": url, "namespace": "vllm", "deadline_s": deadline_s, "retry_interval_s": 0.5}


def offloading_spec(url: str, deadline_s: float = 2.0) -> TieringOffloadingSpec:
    config = OffloadingConfig(
        groups=(OffloadingGroupConfig(tokens_per_block=16, layer_names=("layer.0", "layer.1"), group_id=0),),
        worker_kv_bytes_per_block=CHUNK_BYTES, enable_kv_cache_events=False,
        extra_config={"cpu_bytes_to_use": CHUNK_BYTES * SLOTS * 2, "secondary_tiers": [tier_config(url, deadline_s)]},
        engine_id=ENGINE_ID, model=OffloadingModelConfig(name="memkv-demo-model", dtype="bfloat16"),
        cache=OffloadingCacheConfig(tokens_per_hash=16, blocks_per_chunk=1),
        parallel=OffloadingParallelConfig(rank=0, world_size=1, tp_size=1, pp_size=1, pcp_size=1, dcp_size=1,
                                          data_parallel_index=0, data_parallel_size=1,
                                          data_parallel_rank_local=None, is_parallelism_agnostic=False))
    return TieringOffloadingSpec(config)


def make_tier(url: str, deadline_s: float = 2.0) -> tuple[Any, npt.NDArray[np.uint8]]:
    load_general_plugins()
    primary = np.zeros((SLOTS, CHUNK_BYTES), dtype=np.uint8)
    tier = SecondaryTierFactory.create_secondary_tier(tier_config(url, deadline_s), memoryview(primary.data),
                                                      offloading_spec(url, deadline_s))
    return tier, primary


def prefix_key(index: int) -> bytes:
    key: bytes = make_offload_key(hashlib.sha256(f"shared-prefix-{index}".encode()).digest(), 0)
    return key


def expected_chunk(index: int) -> npt.NDArray[np.uint8]:
    return ((np.arange(CHUNK_BYTES, dtype=np.uint32) * (index + 3)) % 251).astype(np.uint8)


def finish(tier: Any, job_id: int, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for result in tier.get_finished_jobs():
            if result.job_id == job_id:
                return result
        time.sleep(0.01)
    raise TimeoutError(f"job {job_id} did not finish within {timeout_s} s")


def lookup_all(tier: Any, keys: list[bytes], timeout_s: float = 30) -> list[LookupResult]:
    request = ReqContext(req_id="r1")
    tier.on_new_request(request)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answers = [tier.lookup(k, request) for k in keys]
        if LookupResult.RETRY not in answers:
            return answers
        tier.on_schedule_end(ScheduleEndContext(new_req_ids=(), preempted_req_ids=()))
        time.sleep(0.01)
    raise TimeoutError("lookups stayed RETRY")


def store(tier: Any, primary: npt.NDArray[np.uint8], keys: list[bytes], first_slot: int, job_id: int) -> Any:
    for i in range(len(keys)):
        primary[first_slot + i] = expected_chunk(i)
    tier.submit_store(TransferJob(job_id=job_id, keys=keys, chunk_ids=np.arange(first_slot, first_slot + len(keys)),
                                  is_promotion=False, req_context=ReqContext(req_id="r1")))
    return finish(tier, job_id)


def load(tier: Any, keys: list[bytes], first_slot: int, job_id: int) -> Any:
    tier.submit_load(TransferJob(job_id=job_id, keys=keys, chunk_ids=np.arange(first_slot, first_slot + len(keys)),
                                 is_promotion=True, req_context=ReqContext(req_id="r1")))
    return finish(tier, job_id)


def run_step(mode: str, url: str, count: int) -> dict[str, object]:
    if not 0 < count <= SLOTS // 2:
        raise ValueError(f"COUNT must be 1..{SLOTS // 2} (the primary view holds {SLOTS} chunks)")
    tier, primary = make_tier(url)
    keys = [prefix_key(i) for i in range(count)]
    report: dict[str, object] = {"mode": mode, "tier": type(tier).__name__}
    try:
        if mode == "store":
            report["stored"] = store(tier, primary, keys, 0, job_id=1).success
        else:
            report["hits"] = sum(1 for r in lookup_all(tier, keys) if r is LookupResult.HIT)
            report["loaded"] = load(tier, keys, SLOTS - count, job_id=2).success
            report["exact"] = sum(1 for i in range(count) if np.array_equal(primary[SLOTS - count + i],
                                                                             expected_chunk(i)))
    finally:
        tier.shutdown()
    return report


if __name__ == "__main__":
    from ..demo_process import main

    raise SystemExit(main(run_step))
