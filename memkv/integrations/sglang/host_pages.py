"""The pages of SGLang's host KV pool as memory memkv reads into and sends from, in place.

SGLang's host pools describe each page for zero-copy storage I/O (`get_page_buffer_meta`): a list
of (address, size) parts per page, e.g. its K and V halves in a page-first layout, or one K and one
V run per layer in a layer-first one. Each part is one memkv block, so a load lands straight in
the pool's memory and a store sends straight from it (the socket copy only).
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch


class HostPages:
    """One registered host pool's page parts (their count and sizes are fixed per pool)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.page_size = int(pool.page_size)
        pointers, sizes = self._meta(torch.arange(self.page_size, dtype=torch.int64))
        self.part_sizes: tuple[int, ...] = tuple(int(s) for s in sizes)
        if not pointers or len(pointers) != len(self.part_sizes):
            raise NotImplementedError(f"SGLang's {type(pool).__name__} described a page as {len(pointers)} parts "
                                      f"of {len(self.part_sizes)} sizes; memkv's v1 page calls cannot use it")

    @property
    def layout(self) -> str:
        """What the fingerprint must name: pages of another shape are other bytes."""
        return f"{getattr(self.pool, 'layout', '?')};parts={'+'.join(str(s) for s in self.part_sizes)}"

    def _meta(self, host_indices: torch.Tensor) -> tuple[list[int], list[int]]:
        try:
            pointers, sizes = self.pool.get_page_buffer_meta(host_indices)
        except (AttributeError, ValueError, NotImplementedError) as exc:
            raise NotImplementedError(
                f"memkv's v1 page calls move pages in place through the host pool's page addresses "
                f"(get_page_buffer_meta), which SGLang's {type(self.pool).__name__} with layout "
                f"{getattr(self.pool, 'layout', '?')!r} does not give ({exc}); leave out \"interface_v1\" to use "
                f"the page-copy calls") from exc
        return [int(p) for p in pointers], [int(s) for s in sizes]

    def parts(self, host_indices: torch.Tensor) -> list[list[memoryview]]:
        """Per page of `host_indices` (page-aligned, page_size entries per page), its parts' memory."""
        pointers, sizes = self._meta(host_indices)
        per_page = len(self.part_sizes)
        if len(pointers) % per_page or tuple(sizes[:per_page]) != self.part_sizes:
            raise ValueError(f"the host pool described pages as {len(pointers)} parts, not {per_page} per page")
        views = [memoryview((ctypes.c_ubyte * size).from_address(pointer)).cast("B")
                 for pointer, size in zip(pointers, sizes, strict=True)]
        return [views[i:i + per_page] for i in range(0, len(views), per_page)]

    def whole_pages(self, per_part: list[bool]) -> list[bool]:
        """Per page: whether every one of its parts succeeded (answers come part by part, page by page)."""
        n = len(self.part_sizes)
        return [all(per_part[i:i + n]) for i in range(0, len(per_part), n)]
