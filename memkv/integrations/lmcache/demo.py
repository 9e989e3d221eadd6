"""LMCache's side of `memkv demo --engine lmcache` and of the contract tests' LMCache processes.

`python -m memkv.integrations.lmcache.demo store|load URL COUNT` builds the memkv L2 adapter the
way LMCache's MP mode does (a "plugin" adapter spec through LMCache's own parser and factory),
then stores or loads COUNT chunks of a prefix whose hashes and bytes every process derives alike,
and prints what it did as JSON on a line starting `RESULT `.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import select
from typing import Any

import torch
from lmcache.v1.distributed.api import ObjectKey
from lmcache.v1.distributed.internal_api import L1MemoryDesc
from lmcache.v1.distributed.l2_adapters import create_l2_adapter
from lmcache.v1.distributed.l2_adapters.config import parse_args_to_l2_adapters_config
from lmcache.v1.memory_management import MemoryFormat, MemoryObjMetadata, TensorMemoryObj
from lmcache.v1.platform import consume_fd

ELEMENTS = 4096  # float32 per chunk: 16 KiB
MODEL = "memkv-demo-model"


def adapter_spec(url: str, deadline_s: float = 2.0) -> str:
    return json.dumps({"type": "plugin", "module_path": "memkv.integrations.lmcache.l2", "class_name": "MemkvL2Adapter",
                       "adapter_params": {"url": url, "namespace": "lmcache", "deadline_s": deadline_s,
                                          "retry_interval_s": 0.5, "hash_algorithm": "sha256_cbor",
                                          "kv_dtype": "float32"}})


def make_adapter(url: str, buffer: torch.Tensor, deadline_s: float = 2.0) -> Any:
    config = parse_args_to_l2_adapters_config(argparse.Namespace(l2_adapter=[adapter_spec(url, deadline_s)]))
    flat = buffer.view(-1)
    desc = L1MemoryDesc(ptr=flat.data_ptr(), size=flat.numel() * flat.element_size(), align_bytes=4)
    return create_l2_adapter(config.adapters[0], l1_memory_desc=desc)


def prefix_key(index: int) -> ObjectKey:
    return ObjectKey(chunk_hash=hashlib.sha256(f"shared-prefix-{index}".encode()).digest(), model_name=MODEL, kv_rank=0)


def expected_chunk(index: int) -> torch.Tensor:
    return torch.arange(ELEMENTS, dtype=torch.float32) * (index + 1) + 0.25


def memory_obj(tensor: torch.Tensor) -> TensorMemoryObj:
    meta = MemoryObjMetadata(shape=torch.Size([ELEMENTS]), dtype=torch.float32, address=tensor.data_ptr(),
                             phy_size=ELEMENTS * 4, fmt=MemoryFormat.KV_2LTD, ref_count=1)
    return TensorMemoryObj(tensor, meta, parent_allocator=None)


def wait(fd: int, timeout_s: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if not poller.poll(int(timeout_s * 1000)):
        return False
    try:
        consume_fd(fd)
    except BlockingIOError:
        pass
    return True


def _await(fd: int, what: str) -> None:
    if not wait(fd, 30):
        raise TimeoutError(f"LMCache's {what} event did not fire within 30 s")


def run_step(mode: str, url: str, count: int) -> dict[str, object]:
    buffer = torch.zeros(count * ELEMENTS, dtype=torch.float32)
    adapter = make_adapter(url, buffer)
    chunks = [buffer[i * ELEMENTS:(i + 1) * ELEMENTS] for i in range(count)]
    keys = [prefix_key(i) for i in range(count)]
    report: dict[str, object] = {"mode": mode}
    try:
        if mode == "store":
            for i, chunk in enumerate(chunks):
                chunk.copy_(expected_chunk(i))
            task = adapter.submit_store_task(keys, [memory_obj(c) for c in chunks])
            _await(adapter.get_store_event_fd(), "store")
            report["stored"] = adapter.pop_completed_store_tasks()[task].is_successful()
        else:
            task = adapter.submit_lookup_and_lock_task(keys, {})
            _await(adapter.get_lookup_and_lock_event_fd(), "lookup")
            found = adapter.query_lookup_and_lock_result(task)
            report["found"] = sum(1 for i in range(count) if found.test(i))
            task = adapter.submit_load_task(keys, [memory_obj(c) for c in chunks])
            _await(adapter.get_load_event_fd(), "load")
            loaded = adapter.query_load_result(task)
            report["loaded"] = sum(1 for i in range(count) if loaded.test(i))
            report["exact"] = sum(1 for i, c in enumerate(chunks) if torch.equal(c, expected_chunk(i)))
    finally:
        adapter.close()
    return report


if __name__ == "__main__":
    from ..demo_process import main

    raise SystemExit(main(run_step))
