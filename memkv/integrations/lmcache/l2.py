"""LMCache MP-mode L2 adapter over memkv (`L2AdapterInterface`, loaded as a "plugin" adapter).

Each submitted task runs on a small worker pool under the tier's deadline and signals its
event fd when done; a task that finds the backlog full completes at once as a failure (store)
or as all-absent (lookup, load). "Lock" is advisory: memkv evicts by its own policy, so a block
gone between lookup and load is a load miss, which the interface allows.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from lmcache.lmcache_native import Bitmap
from lmcache.v1.distributed.api import ObjectKey
from lmcache.v1.distributed.internal_api import L2StoreResult
from lmcache.v1.distributed.l2_adapters.base import L2AdapterInterface, L2TaskId
from lmcache.v1.distributed.l2_adapters.config import L2AdapterConfigBase
from lmcache.v1.memory_management import MemoryObj
from lmcache.v1.platform import create_event_notifier

from ...blocks import BlockMeta
from ...transport import PutItem
from ..engine_keys import EngineKeys, adapter_fingerprint, hash_seed_attributes
from ..tier import GuardedTier, TierSettings
from ..workers import BoundedWorkers

LAYOUT = "lmcache-mp"
_OWN_OPTIONS = ("weights", "kv_dtype", "hash_algorithm")


class MemkvL2AdapterConfig(L2AdapterConfigBase):  # type: ignore[misc]
    """`adapter_params`: the tier settings (url, namespace, key, deadline_s, ...) plus
    `weights` (a revision or checksum of the weights), `kv_dtype` and `hash_algorithm`
    (LMCache's `pre_caching_hash_algorithm`; "builtin" needs PYTHONHASHSEED pinned)."""

    def __init__(self, tier: TierSettings, weights: str = "", kv_dtype: str = "", hash_algorithm: str = "builtin"):
        self.tier = tier
        self.weights = weights
        self.kv_dtype = kv_dtype
        self.hash_algorithm = hash_algorithm

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MemkvL2AdapterConfig:
        own = {name: str(d[name]) for name in _OWN_OPTIONS if name in d}
        tier = TierSettings.from_options({k: v for k, v in d.items() if k not in _OWN_OPTIONS})
        return cls(tier, **own)

    @classmethod
    def help(cls) -> str:
        return ("memkv L2 adapter: adapter_params url (memkv+tcp://host:port), namespace, key or key_file, "
                "deadline_s, connect_timeout_s, retry_interval_s, max_pending_stores, weights, kv_dtype, "
                "hash_algorithm")


class MemkvL2Adapter(L2AdapterInterface):  # type: ignore[misc]
    """Store, lookup and load of LMCache objects in a memkv namespace."""

    def __init__(self, config: MemkvL2AdapterConfig, l1_memory_desc: Any = None,
                 tier: GuardedTier | None = None) -> None:
        super().__init__()
        self.config = config
        self._seed = hash_seed_attributes("LMCache", config.hash_algorithm == "builtin")
        self.tier = tier or GuardedTier(config.tier)
        self._notifiers = {kind: create_event_notifier() for kind in ("store", "lookup", "load")}
        self._lock = threading.Lock()
        self._next_id = 0
        self._store_results: dict[L2TaskId, L2StoreResult] = {}
        self._bitmaps: dict[str, dict[L2TaskId, Bitmap]] = {"lookup": {}, "load": {}}
        self._workers = BoundedWorkers(config.tier.max_pending_stores, name="memkv-l2")

    # ---- event fds --------------------------------------------------------------------------------
    def get_store_event_fd(self) -> int:
        return int(self._notifiers["store"].fileno())

    def get_lookup_and_lock_event_fd(self) -> int:
        return int(self._notifiers["lookup"].fileno())

    def get_load_event_fd(self) -> int:
        return int(self._notifiers["load"].fileno())

    # ---- keys -------------------------------------------------------------------------------------------
    @functools.lru_cache(maxsize=64)  # noqa: B019 - few distinct (model, rank, group, salt) per adapter
    def _keys_for(self, model: str, kv_rank: int, group: int, salt: str) -> EngineKeys:
        extra: dict[str, str | int] = {"object_group": group, **self._seed}
        if salt:
            extra["cache_salt"] = salt
        # world_size 0: LMCache's kv_rank already encodes the slice of a multi-rank deployment
        return EngineKeys(adapter_fingerprint(model, layout=LAYOUT, dtype=self.config.kv_dtype, world_size=0,
                                              rank=kv_rank, weights=self.config.weights, extra=extra))

    def _key(self, key: ObjectKey) -> bytes:
        return self._keys_for(key.model_name, key.kv_rank, key.object_group_id, key.cache_salt).key(key.chunk_hash)

    # ---- tasks -------------------------------------------------------------------------------------------
    def _submit(self, run: Callable[[], None], give_up: Callable[[], None]) -> None:
        self._workers.submit(run, give_up)

    def _new_id(self) -> L2TaskId:
        with self._lock:
            self._next_id += 1
            return self._next_id

    def _finish_store(self, task_id: L2TaskId, result: L2StoreResult) -> None:
        with self._lock:
            self._store_results[task_id] = result
        self._notifiers["store"].notify()

    def _finish_bitmap(self, kind: str, task_id: L2TaskId, size: int, hits: list[bool]) -> None:
        bitmap = Bitmap(size)
        for index, hit in enumerate(hits):
            if hit:
                bitmap.set(index)
        with self._lock:
            self._bitmaps[kind][task_id] = bitmap
        self._notifiers[kind].notify()

    # ---- store ---------------------------------------------------------------------------------------------
    def submit_store_task(self, keys: list[ObjectKey], objects: list[MemoryObj]) -> L2TaskId:
        task_id = self._new_id()

        def run() -> None:
            items = [PutItem(self._key(k), o.byte_array, BlockMeta(dtype=self.config.kv_dtype))
                     for k, o in zip(keys, objects, strict=True)]
            stored = self.tier.store(items)
            sizes = [memoryview(o.byte_array).nbytes for o in objects]
            if all(stored):
                self._notify_keys_stored(list(keys), sizes)
                self._finish_store(task_id, L2StoreResult(True, sum(sizes)))
            else:
                self._finish_store(task_id, L2StoreResult(False, 0))

        self._submit(run, lambda: self._finish_store(task_id, L2StoreResult(False, 0)))
        return task_id

    def pop_completed_store_tasks(self) -> dict[L2TaskId, L2StoreResult]:
        with self._lock:
            done, self._store_results = self._store_results, {}
        return done

    # ---- lookup --------------------------------------------------------------------------------------------
    def submit_lookup_and_lock_task(self, keys: list[ObjectKey], group_layout_descs: dict[int, Any]) -> L2TaskId:
        task_id = self._new_id()
        self._submit(lambda: self._finish_bitmap("lookup", task_id, len(keys),
                                                 self.tier.exists([self._key(k) for k in keys])),
                     lambda: self._finish_bitmap("lookup", task_id, len(keys), []))
        return task_id

    def query_lookup_and_lock_result(self, task_id: L2TaskId) -> Bitmap | None:
        with self._lock:
            return self._bitmaps["lookup"].pop(task_id, None)

    def submit_unlock(self, keys: list[ObjectKey]) -> None:
        """Nothing to undo: lookups take no lock in memkv (see the module's note)."""

    # ---- load ------------------------------------------------------------------------------------------------
    def submit_load_task(self, keys: list[ObjectKey], objects: list[MemoryObj]) -> L2TaskId:
        task_id = self._new_id()

        def run() -> None:
            buffers = [o.byte_array for o in objects]
            lengths = self.tier.load_into([self._key(k) for k in keys], buffers)
            hits = [length is not None and length == memoryview(buf).nbytes
                    for length, buf in zip(lengths, buffers, strict=True)]
            if any(hits):
                self._notify_keys_accessed([k for k, hit in zip(keys, hits, strict=True) if hit])
            self._finish_bitmap("load", task_id, len(keys), hits)

        self._submit(run, lambda: self._finish_bitmap("load", task_id, len(keys), []))
        return task_id

    def query_load_result(self, task_id: L2TaskId) -> Bitmap | None:
        with self._lock:
            return self._bitmaps["load"].pop(task_id, None)

    # ---- status and close ------------------------------------------------------------------------------------
    def report_status(self) -> dict[str, Any]:
        counters = self.tier.counters
        return {"is_healthy": self.tier.available, "failures": counters.failures,
                "dropped_stores": counters.dropped_stores, "skipped_while_down": counters.skipped_while_down}

    def close(self) -> None:
        self._workers.close()
        self.tier.close()
        for notifier in self._notifiers.values():
            notifier.close()
