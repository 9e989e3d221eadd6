"""`HiCacheStorage` over memkv: SGLang's page hashes (SHA-256 hex) map to keys with MKV-INT-001
(and MKV-INT-005 for the parts of a page in the v1 calls).

The legacy calls (get, set and their batch forms) move tensors as bytes; the v1 calls over
`host_indices` (chosen by SGLang when the extra config says `"interface_v1": 1`) move each page's
parts in place in the host pool (`host_pages.HostPages`): zero-copy, one memkv block per part.
The v2 calls serve side pools of hybrid models (Mamba, SWA, DSA indexer, DeepSeek V4 compressed
pools); they are refused when SGLang registers such a pool, so a hybrid model fails at attach
time instead of mid-run.
"""

from __future__ import annotations

from typing import Any

import torch
from sglang.srt.mem_cache.hicache_storage import HiCacheStorage, HiCacheStorageConfig, HiCacheStorageExtraInfo

from ...transport import PutItem
from ..engine_keys import EngineKeys, adapter_fingerprint, part_hash
from ..tier import GuardedTier, TierSettings
from .host_pages import HostPages

# read by SGLang itself: the factory's fields, and the switch to the v1 page calls
_SGLANG_FIELDS = ("backend_name", "module_path", "class_name", "interface_v1")
_OWN_OPTIONS = ("weights",)
_NO_SIDE_POOLS = ("memkv's SGLang storage keeps the KV pool only: the v2 calls for side pools (Mamba, SWA, "
                  "DSA indexer, DeepSeek V4 compressed pools) are not implemented, so hybrid models cannot "
                  "use it as their HiCache L3 backend")


def _bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's memory as writable bytes (no copy; it must be contiguous on the CPU)."""
    return memoryview(tensor.contiguous().view(torch.uint8).numpy()).cast("B")


class MemkvHiCacheStorage(HiCacheStorage):  # type: ignore[misc]
    """SGLang's L3 tier in a memkv namespace."""

    def __init__(self, storage_config: HiCacheStorageConfig, kwargs: dict[str, Any] | None = None) -> None:
        extra = dict(storage_config.extra_config or {})
        self.config = storage_config
        self.weights = str(extra.get("weights", ""))
        options = {k: v for k, v in extra.items() if k not in _SGLANG_FIELDS + _OWN_OPTIONS}
        self.tier = GuardedTier(TierSettings.from_options(options))
        self.keys = self._engine_keys(dtype="")
        self.pages: HostPages | None = None
        self.v1 = bool(extra.get("interface_v1", 0))

    def _engine_keys(self, dtype: str, host_layout: str = "") -> EngineKeys:
        config = self.config
        layout = (f"sglang-hicache;page_first={int(config.is_page_first_layout)};mla={int(config.is_mla_model)};"
                  f"split_heads={int(config.should_split_heads)}{host_layout}")
        # MLA ranks hold the same bytes (one writer per DCP shard): the rank is the DCP rank only
        rank, world = (config.dcp_rank, config.dcp_size) if config.is_mla_model else (config.tp_rank, config.tp_size)
        return EngineKeys(adapter_fingerprint(config.model_name or "unnamed", layout=layout, dtype=dtype,
                                              world_size=world, rank=rank, weights=self.weights,
                                              extra={"pp_size": config.pp_size, "pp_rank": config.pp_rank,
                                                     "attn_cp_size": config.attn_cp_size,
                                                     "attn_cp_rank": config.attn_cp_rank}))

    def register_mem_pool_host(self, mem_pool_host: Any) -> None:
        super().register_mem_pool_host(mem_pool_host)
        page_bytes = memoryview(mem_pool_host.get_dummy_flat_data_page().view(torch.uint8).numpy()).nbytes
        if self.v1:  # refuses a pool that cannot describe its pages now, at attach time
            self.pages = HostPages(mem_pool_host)
        host_layout = f";v1={self.pages.layout}" if self.pages else ""
        self.keys = self._engine_keys(dtype=f"{mem_pool_host.dtype};page_bytes={page_bytes}", host_layout=host_layout)

    def register_mem_host_pool_v2(self, host_pool: Any, host_pool_name: Any) -> None:
        raise NotImplementedError(f"{_NO_SIDE_POOLS} (SGLang registered the pool {host_pool_name!s})")

    def batch_exists_v2(self, keys: list[str], pool_transfers: Any = None, extra_info: Any = None) -> Any:
        raise NotImplementedError(_NO_SIDE_POOLS)

    def batch_get_v2(self, transfers: Any, extra_info: Any = None) -> Any:
        raise NotImplementedError(_NO_SIDE_POOLS)

    def batch_set_v2(self, transfers: Any, extra_info: Any = None) -> Any:
        raise NotImplementedError(_NO_SIDE_POOLS)

    # ---- presence ----------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return self.batch_exists([key]) == 1

    def batch_exists(self, keys: list[str], extra_info: HiCacheStorageExtraInfo | None = None) -> int:
        if self.pages is None:
            return self.tier.prefix_length(self.keys.keys(keys))
        pages = self.pages.whole_pages(self.tier.exists(self._part_keys(keys)))
        return pages.index(False) if False in pages else len(pages)

    # ---- tensors as bytes (the legacy interface) -------------------------------------------------------
    def get(self, key: str, target_location: Any = None, target_sizes: Any = None) -> torch.Tensor | None:
        return self.batch_get([key], None if target_location is None else [target_location])[0]

    def batch_get(self, keys: list[str], target_locations: Any = None,
                  target_sizes: Any = None) -> list[torch.Tensor | None]:
        memkv_keys = self.keys.keys(keys)
        if target_locations is None:
            return [None if data is None else torch.frombuffer(bytearray(data), dtype=torch.uint8)
                    for data in self.tier.read(memkv_keys)]
        targets = list(target_locations)
        lengths = self.tier.load_into(memkv_keys, [_bytes(t) for t in targets])
        return [t if n == _bytes(t).nbytes else None for t, n in zip(targets, lengths, strict=True)]

    def set(self, key: str, value: Any = None, target_location: Any = None, target_sizes: Any = None) -> bool:
        return self.batch_set([key], [value if value is not None else target_location])

    def batch_set(self, keys: list[str], values: Any = None, target_locations: Any = None,
                  target_sizes: Any = None) -> bool:
        tensors = list(values if values is not None else target_locations)
        items = [PutItem(k, _bytes(t)) for k, t in zip(self.keys.keys(keys), tensors, strict=True)]
        return all(self.tier.store(items))

    # ---- pages of the host pool, in place (the v1 interface) -----------------------------------------
    def _part_keys(self, keys: list[str]) -> list[bytes]:
        assert self.pages is not None
        return self.keys.keys([part_hash(key, part) for key in keys for part in range(len(self.pages.part_sizes))])

    def _v1_pages(self) -> HostPages:
        if self.pages is None:
            raise NotImplementedError("the v1 page calls need \"interface_v1\": 1 in the extra config and a "
                                      "registered host pool")
        return self.pages

    def batch_get_v1(self, keys: list[str], host_indices: torch.Tensor,
                     extra_info: HiCacheStorageExtraInfo | None = None) -> list[bool]:
        parts = self._v1_pages().parts(host_indices)[:len(keys)]
        views = [view for page in parts for view in page]
        lengths = self.tier.load_into(self._part_keys(keys), views)
        return self._v1_pages().whole_pages([n == view.nbytes for n, view in zip(lengths, views, strict=True)])

    def batch_set_v1(self, keys: list[str], host_indices: torch.Tensor,
                     extra_info: HiCacheStorageExtraInfo | None = None) -> list[bool]:
        parts = self._v1_pages().parts(host_indices)[:len(keys)]
        views = [view for page in parts for view in page]
        stored = self.tier.store([PutItem(k, v) for k, v in zip(self._part_keys(keys), views, strict=True)])
        return self._v1_pages().whole_pages(stored)

    def clear(self) -> None:
        """memkv namespaces are cleared by their administrator (`memkv admin invalidate`), not by an engine."""

    def close(self) -> None:
        self.tier.close()
