"""One SGLang process for the memkv HiCache tests: `python sglang_worker.py store|load URL COUNT`.

It creates the storage the way SGLang does for `--hicache-storage-backend dynamic` (through its
`StorageBackendFactory`), then stores or loads COUNT pages of a prefix every process derives
alike (SGLang's page keys are SHA-256 hex digests); it prints a JSON line `RESULT {...}`.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

import torch
from engine_process import report_result
from sglang.srt.mem_cache.hicache_storage import HiCacheStorageConfig
from sglang.srt.mem_cache.storage.backend_factory import StorageBackendFactory

PAGE_ELEMENTS = 8192  # bfloat16: 16 KiB pages


def storage_config(url: str, deadline_s: float = 2.0) -> HiCacheStorageConfig:
    extra = {"backend_name": "memkv", "module_path": "memkv.integrations.sglang.storage",
             "class_name": "MemkvHiCacheStorage", "url": url, "namespace": "sglang", "deadline_s": deadline_s,
             "retry_interval_s": 0.5}
    return HiCacheStorageConfig(tp_rank=0, tp_size=1, pp_rank=0, pp_size=1, attn_cp_rank=0, attn_cp_size=1,
                                is_mla_model=False, enable_storage_metrics=False, is_page_first_layout=True,
                                model_name="memkv-test-model", extra_config=extra)


def make_storage(url: str, deadline_s: float = 2.0) -> Any:
    return StorageBackendFactory.create_backend("dynamic", storage_config(url, deadline_s), None)


def page_key(index: int) -> str:
    return hashlib.sha256(f"shared-prefix-{index}".encode()).hexdigest()


def expected_page(index: int) -> torch.Tensor:
    return (torch.arange(PAGE_ELEMENTS, dtype=torch.float32) * (index + 1) / 7).to(torch.bfloat16)


def main() -> int:
    mode, url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    storage = make_storage(url)
    keys = [page_key(i) for i in range(count)]
    report: dict[str, object] = {"mode": mode, "storage": type(storage).__name__}
    try:
        if mode == "store":
            report["stored"] = storage.batch_set(keys, [expected_page(i) for i in range(count)])
        else:
            report["prefix"] = storage.batch_exists(keys)
            targets = [torch.zeros(PAGE_ELEMENTS, dtype=torch.bfloat16) for _ in keys]
            loaded = storage.batch_get(keys, targets)
            report["exact"] = sum(1 for i, t in enumerate(loaded) if t is not None and torch.equal(t, expected_page(i)))
    finally:
        storage.close()
    return report_result(report)


if __name__ == "__main__":
    raise SystemExit(main())
