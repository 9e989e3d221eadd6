"""SGLang's real host KV pool (`MHATokenToKVPoolHost`) built on the CPU, for the v1 page calls.

sglang 0.5.23 reaches its host pools only through `sglang.srt.mem_cache.memory_pool`, which imports
`sglang.srt.configs`, whose multimodal configs (nano_nemotron_vl -> multimodal.internvl_utils,
deepseek_ocr) import torchvision at module level. No CPU torchvision wheel is reachable here and
PyPI's build pulls CUDA torch, so an engine process of these tests gets a placeholder `torchvision`
for those imports: every attribute of it raises when used, and the KV pool never uses one. Import
this module before anything of sglang's memory pools, and only in a child process (the
placeholder stays in `sys.modules`).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any


class _Unusable:
    """A torchvision attribute: it may be named at import time, never used."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> _Unusable:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Unusable(f"{self._name}.{attr}")

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError(f"{self._name} used: torchvision is a placeholder in this process (sglang_host_pool.py)")


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, attr: str) -> _Unusable:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Unusable(f"{self.__name__}.{attr}")


class _TorchvisionPlaceholder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _PlaceholderModule(spec.name)
        module.__path__ = []
        module.__version__ = "0.0"  # transformers compares torchvision's version at import
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the placeholder has no code."""


if importlib.util.find_spec("torchvision") is None:
    sys.meta_path.insert(0, _TorchvisionPlaceholder())

import torch  # noqa: E402
from sglang.srt.mem_cache.device_pool_info import KVBufferLayout, KVBuffers, MHABufferInfo  # noqa: E402
from sglang.srt.mem_cache.pool_host.mha import MHATokenToKVPoolHost  # noqa: E402

LAYERS, HEADS, HEAD_DIM, PAGE_TOKENS, DEVICE_TOKENS = 2, 4, 64, 16, 256  # 16 KiB bfloat16 pages


def host_pool(layout: str) -> Any:
    """A host pool over a CPU "device" KV buffer of DEVICE_TOKENS tokens, twice its size."""
    k = tuple(torch.zeros(DEVICE_TOKENS, HEADS, HEAD_DIM, dtype=torch.bfloat16) for _ in range(LAYERS))
    v = tuple(torch.zeros(DEVICE_TOKENS, HEADS, HEAD_DIM, dtype=torch.bfloat16) for _ in range(LAYERS))
    pointers = [torch.tensor([t.data_ptr() for t in side], dtype=torch.uint64) for side in (k, v)]
    info = MHABufferInfo(buffers=KVBuffers(k=k, v=v, k_data_ptrs=pointers[0], v_data_ptrs=pointers[1],
                                           layout=KVBufferLayout.NHD),
                         page_size=PAGE_TOKENS, head_num=HEADS, head_dim=HEAD_DIM, v_head_dim=HEAD_DIM,
                         dtype=torch.bfloat16, device=torch.device("cpu"))
    return MHATokenToKVPoolHost(info, 2.0, 0, PAGE_TOKENS, layout, pin_memory=False, device="cpu",
                                device_capacity_tokens=DEVICE_TOKENS, start_layer=0, end_layer=LAYERS - 1)


def expected_flat_page(pool: Any, index: int) -> torch.Tensor:
    """Page `index` of the shared prefix in the pool's flat page format (every process derives it alike)."""
    shape = pool.get_dummy_flat_data_page().shape
    values = torch.arange(int(torch.Size(shape).numel()), dtype=torch.float32) * (index + 1) / 13
    return values.to(torch.bfloat16).reshape(shape)


def page_starts(pool: Any, host_indices: torch.Tensor) -> list[int]:
    return [int(i) for i in host_indices[::pool.page_size]]
