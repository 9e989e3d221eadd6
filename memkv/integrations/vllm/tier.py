"""`SecondaryTierManager` over memkv: chunks move between vLLM's CPU tier and a memkv namespace.

Stores read the chunk's bytes straight out of `primary_kv_view` and loads write straight into
the primary slot vLLM allocated (no staging copy in Python). Every method returns at once:
transfers run on a bounded worker pool (a full backlog fails the job at once), lookups on
vLLM's own asynchronous lookup thread, each call under the tier's deadline (MKV-INT-004).
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Collection, Iterable
from typing import Any, ClassVar

from vllm.v1.kv_offload.base import Locality, LookupResult, Medium, OffloadKey, ReqContext, RequestOffloadingContext
from vllm.v1.kv_offload.tiering.async_lookup import AsyncLookupManager
from vllm.v1.kv_offload.tiering.base import JobResult, SecondaryTierManager, TransferJob

from ...transport import PutItem
from ..engine_keys import EngineKeys, adapter_fingerprint, hash_seed_attributes
from ..tier import GuardedTier, TierSettings
from ..workers import BoundedWorkers

# vLLM's non-cryptographic prefix-caching hashes are seeded per process unless PYTHONHASHSEED is set
_SEEDED_PER_PROCESS = frozenset({"xxhash", "xxhash_cbor"})


class _Lookups(AsyncLookupManager):  # type: ignore[misc]
    def __init__(self, tier: MemkvSecondaryTier, tier_type: str) -> None:
        super().__init__(tier_type=tier_type)
        self._tier = tier

    def batch_lookup(self, keys: list[OffloadKey], req_context: ReqContext) -> Iterable[bool]:
        found: list[bool] = self._tier.memkv.exists(self._tier.keys.keys(list(keys)))
        return found


def tier_fingerprint(spec: Any, block_bytes: int, weights: str, seed: dict[str, str]) -> bytes:
    """MKV-INT-002 for vLLM: what FileMapper also separates runs by, and the chunk's size in bytes."""
    config = spec.config
    groups = ",".join(f"{g.tokens_per_block}x{len(g.layer_names)}" for g in config.groups)
    layout = (f"vllm-offload;tokens_per_hash={config.cache.tokens_per_hash};blocks_per_chunk="
              f"{config.cache.blocks_per_chunk};chunk_bytes={block_bytes};groups={groups}")
    parallel = config.parallel
    extra: dict[str, str | int] = {"tp_size": parallel.tp_size, "pp_size": parallel.pp_size,
                                   "pcp_size": parallel.pcp_size, "dcp_size": parallel.dcp_size, **seed}
    return adapter_fingerprint(config.model.name, layout=layout, dtype=str(config.model.dtype),
                               world_size=parallel.world_size, rank=parallel.rank, weights=weights, extra=extra)


class MemkvSecondaryTier(SecondaryTierManager):  # type: ignore[misc]
    """A memkv namespace as one of vLLM's secondary offloading tiers."""

    medium: ClassVar[Medium] = Medium.STORAGE

    def __init__(self, offloading_spec: Any, primary_kv_view: memoryview, tier_type: str, url: str,
                 namespace: str = "default", key: str | None = None, key_file: str | None = None,
                 deadline_s: float = 2.0, connect_timeout_s: float = 1.0, retry_interval_s: float = 2.0,
                 max_pending_jobs: int = 64, weights: str = "", hash_algorithm: str = "sha256",
                 locality: str | None = "REMOTE", backpressure_detector: Any = None) -> None:
        super().__init__(offloading_spec, primary_kv_view, tier_type, backpressure_detector)
        self.locality = Locality(locality) if locality is not None else None
        seed = hash_seed_attributes("vLLM", hash_algorithm in _SEEDED_PER_PROCESS)
        if not seed and os.environ.get("PYTHONHASHSEED", "").isdigit():  # it seeds NONE_HASH for every algorithm
            seed = {"python_hash_seed": str(int(os.environ["PYTHONHASHSEED"]))}
        settings = TierSettings(url=url, namespace=namespace, key=key, key_file=key_file, deadline_s=deadline_s,
                                connect_timeout_s=connect_timeout_s, retry_interval_s=retry_interval_s,
                                max_pending_stores=max_pending_jobs)
        self.memkv = GuardedTier(settings)
        self.keys = EngineKeys(tier_fingerprint(offloading_spec, self.block_size_bytes, weights, seed))
        self._bytes = primary_kv_view.cast("B") if primary_kv_view.ndim != 1 or primary_kv_view.format != "B" \
            else primary_kv_view
        self._workers = BoundedWorkers(max_pending_jobs, threads=2, name="memkv-vllm")
        self._finished: queue.SimpleQueue[tuple[JobResult, list[OffloadKey]]] = queue.SimpleQueue()
        self._lookups = _Lookups(self, tier_type)

    # ---- lookups (scheduler thread; answered by the lookup thread) -----------------------------------
    def lookup(self, key: OffloadKey, req_context: ReqContext) -> LookupResult:
        found = self._lookups.lookup(key, req_context)
        if found is None:
            return LookupResult.RETRY
        return LookupResult.HIT if found else LookupResult.MISS

    def on_new_request(self, req_context: ReqContext) -> RequestOffloadingContext:
        return RequestOffloadingContext()

    def on_request_finished(self, req_context: ReqContext) -> None:
        self._lookups.cleanup(req_context.req_id)

    def on_schedule_end(self, context: Any) -> None:
        self._lookups.flush()

    # ---- transfers --------------------------------------------------------------------------------------
    def _slices(self, job: TransferJob) -> tuple[list[OffloadKey], list[memoryview]]:
        size = self.block_size_bytes
        keys = list(job.keys)
        return keys, [self._bytes[int(c) * size:(int(c) + 1) * size] for c in job.chunk_ids]

    def submit_store(self, job_metadata: TransferJob) -> None:
        keys, slices = self._slices(job_metadata)

        def run() -> None:
            started = time.monotonic()
            stored = self.memkv.store([PutItem(self.keys.key(k), s) for k, s in zip(keys, slices, strict=True)])
            self._finished.put((JobResult(job_metadata.job_id, all(stored), transfer_time=time.monotonic() - started,
                                          transfer_bytes=sum(len(s) for s, ok in zip(slices, stored, strict=True)
                                                             if ok)), []))

        self._workers.submit(run, lambda: self._finished.put((JobResult(job_metadata.job_id, False), [])))

    def submit_load(self, job_metadata: TransferJob) -> None:
        keys, slices = self._slices(job_metadata)

        def run() -> None:
            started = time.monotonic()
            lengths = self.memkv.load_into(self.keys.keys(keys), slices)
            loaded = [k for k, n in zip(keys, lengths, strict=True) if n == self.block_size_bytes]
            failed = [k for k, n in zip(keys, lengths, strict=True) if n != self.block_size_bytes]
            result = JobResult(job_metadata.job_id, not failed,
                               successful_keys=tuple(loaded) if failed and loaded else None,
                               transfer_time=time.monotonic() - started,
                               transfer_bytes=len(loaded) * self.block_size_bytes)
            self._finished.put((result, failed))

        self._workers.submit(run, lambda: self._finished.put((JobResult(job_metadata.job_id, False), keys)))

    def get_finished_jobs(self) -> Iterable[JobResult]:
        results: list[JobResult] = []
        while True:
            try:
                result, missing = self._finished.get_nowait()
            except queue.Empty:
                return results
            if missing:  # a block that did not load is a miss from now on, not a hit to retry
                self._lookups.mark_miss(missing)
            results.append(result)

    def touch(self, keys: Collection[OffloadKey], req_context: ReqContext) -> None:
        """memkv keeps its own recency: every get refreshes a block."""

    def drain_jobs(self) -> None:
        self._workers.drain()

    def shutdown(self) -> None:
        self._lookups.shutdown()
        self._workers.close()
        self.memkv.close()
