"""SGLang's side of `memkv demo --engine sglang` and of the contract tests' SGLang processes.

The storage is created the way SGLang creates it for `--hicache-storage-backend dynamic`
(through its `StorageBackendFactory`); pages carry SHA-256 hex keys, as SGLang's page hashes do,
and bytes that every process derives alike, so a second process can check them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from sglang.srt.mem_cache.hicache_storage import HiCacheStorageConfig
from sglang.srt.mem_cache.storage.backend_factory import StorageBackendFactory

PAGE_ELEMENTS = 8192  # bfloat16: 16 KiB pages
MODEL = "memkv-demo-model"


def storage_config(url: str, deadline_s: float = 2.0, **extra: object) -> HiCacheStorageConfig:
    """What `--hicache-storage-backend-extra-config` gives SGLang, as SGLang's controller builds it."""
    options = {"backend_name": "memkv", "module_path": "memkv.integrations.sglang.storage",
               "class_name": "MemkvHiCacheStorage", "url": url, "namespace": "sglang", "deadline_s": deadline_s,
               "retry_interval_s": 0.5, **extra}
    return HiCacheStorageConfig(tp_rank=0, tp_size=1, pp_rank=0, pp_size=1, attn_cp_rank=0, attn_cp_size=1,
                                is_mla_model=False, enable_storage_metrics=False, is_page_first_layout=True,
                                model_name=MODEL, extra_config=options)


def make_storage(url: str, deadline_s: float = 2.0, **extra: object) -> Any:
    return StorageBackendFactory.create_backend("dynamic", storage_config(url, deadline_s, **extra), None)


def page_key(index: int) -> str:
    return hashlib.sha256(f"shared-prefix-{index}".encode()).hexdigest()


def expected_page(index: int) -> torch.Tensor:
    return (torch.arange(PAGE_ELEMENTS, dtype=torch.float32) * (index + 1) / 7).to(torch.bfloat16)


def run_step(mode: str, url: str, count: int) -> dict[str, object]:
    return store_prefix(url, count) if mode == "store" else load_prefix(url, count)


def store_prefix(url: str, count: int) -> dict[str, object]:
    storage = make_storage(url)
    try:
        stored = storage.batch_set([page_key(i) for i in range(count)], [expected_page(i) for i in range(count)])
        return {"mode": "store", "storage": type(storage).__name__, "stored": stored}
    finally:
        storage.close()


def load_prefix(url: str, count: int) -> dict[str, object]:
    storage = make_storage(url)
    keys = [page_key(i) for i in range(count)]
    try:
        prefix = storage.batch_exists(keys)
        targets = [torch.zeros(PAGE_ELEMENTS, dtype=torch.bfloat16) for _ in keys]
        loaded = storage.batch_get(keys, targets)
        exact = sum(1 for i, t in enumerate(loaded) if t is not None and torch.equal(t, expected_page(i)))
        return {"mode": "load", "storage": type(storage).__name__, "prefix": prefix, "exact": exact}
    finally:
        storage.close()


if __name__ == "__main__":
    from ..demo_process import main

    raise SystemExit(main(run_step))
