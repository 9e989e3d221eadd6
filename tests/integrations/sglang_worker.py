"""One SGLang process driving the zero-copy-path (v1) page calls over a real host KV pool.

`python sglang_worker.py store|load|outage URL COUNT [LAYOUT]` builds SGLang's
`MHATokenToKVPoolHost` on the CPU (sglang_host_pool.py), creates the memkv storage through SGLang's
factory with `"interface_v1": 1` and registers the pool with it, as SGLang's cache controller
does; then it moves COUNT pages of a shared prefix with `batch_set_v1` / `batch_get_v1` over
`host_indices`. `outage` stores, prints STORED, then waits for a line on stdin (the test kills the
server before sending it) and reports what the calls answer without a server and how long they took.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import sglang_host_pool as hp  # first: it lets sglang's memory pools import on the CPU
import torch

from memkv.integrations.demo_process import report_result
from memkv.integrations.sglang.demo import make_storage, page_key


def attach(url: str, layout: str, deadline_s: float = 2.0) -> tuple[Any, Any]:
    pool = hp.host_pool(layout)
    storage = make_storage(url, deadline_s, interface_v1=1)
    storage.register_mem_pool_host(pool)
    return storage, pool


def fill(pool: Any, host_indices: torch.Tensor) -> None:
    for i, start in enumerate(hp.page_starts(pool, host_indices)):
        pool.set_from_flat_data_page(start, hp.expected_flat_page(pool, i))


def exact_pages(pool: Any, host_indices: torch.Tensor, loaded: list[bool]) -> int:
    return sum(1 for i, (start, ok) in enumerate(zip(hp.page_starts(pool, host_indices), loaded, strict=True))
               if ok and torch.equal(pool.get_data_page(start, flat=True), hp.expected_flat_page(pool, i)))


def main() -> int:
    mode, url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    layout = sys.argv[4] if len(sys.argv) > 4 else "page_first"
    storage, pool = attach(url, layout, deadline_s=1.0 if mode == "outage" else 2.0)
    keys = [page_key(1000 + i) for i in range(count)]
    report: dict[str, object] = {"mode": mode, "storage": type(storage).__name__, "pool": type(pool).__name__}
    try:
        if mode in ("store", "outage"):
            host_indices = pool.alloc(count * pool.page_size)
            fill(pool, host_indices)
            report["stored"] = sum(storage.batch_set_v1(keys, host_indices))
        if mode == "load":
            pool.alloc(pool.page_size)  # another request's page: this process's indices differ from the writer's
            host_indices = pool.alloc(count * pool.page_size)
            report["prefix"] = storage.batch_exists(keys)
            loaded = storage.batch_get_v1(keys, host_indices)
            report["loaded"], report["exact"] = sum(loaded), exact_pages(pool, host_indices, loaded)
        if mode == "outage":
            print("STORED", flush=True)
            sys.stdin.readline()
            began = time.monotonic()
            target = pool.alloc(count * pool.page_size)
            before = [pool.get_data_page(s, flat=True).clone() for s in hp.page_starts(pool, target)]
            report["prefix"] = storage.batch_exists(keys)
            report["loaded"] = sum(storage.batch_get_v1(keys, target))
            report["untouched"] = all(torch.equal(pool.get_data_page(s, flat=True), b)
                                      for s, b in zip(hp.page_starts(pool, target), before, strict=True))
            report["stored_after_kill"] = sum(storage.batch_set_v1(keys, host_indices))
            report["seconds"] = round(time.monotonic() - began, 3)
    finally:
        storage.close()
    return report_result(report)


if __name__ == "__main__":
    raise SystemExit(main())
