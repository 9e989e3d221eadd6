"""Children of blocks: the stored keys whose `parent` is one of some keys, a page at a time.

A target that offers it (memkv+tcp from wire 1.2, the file backend) lets a cluster client follow a
chain from one shard to another (spec/cluster.md MKV-CLU-013; the wire form is CHILDREN,
spec/wire.md MKV-WIRE-044). Ask with isinstance, as for the other optional features:

    if isinstance(transport, ListsChildren):
        page = transport.children(parents)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@dataclasses.dataclass(frozen=True, slots=True)
class ChildPage:
    """Children in ascending byte order; `next` is the `after` of the following page, None at the end."""

    keys: tuple[bytes, ...]
    next: bytes | None = None


@runtime_checkable
class ListsChildren(Protocol):
    def children(self, parents: Sequence[bytes], after: bytes | None = None) -> ChildPage:
        """One page of the keys stored here whose parent is one of `parents`, greater than `after`.

        Raises `Unsupported` when the target cannot answer (a memkv server older than wire 1.2).
        """


def page_of(keys: Sequence[bytes], limit: int) -> ChildPage:
    """The page for up to `limit + 1` ascending keys read from an index: `next` set when one more follows."""
    if len(keys) > limit:
        return ChildPage(tuple(keys[:limit]), keys[limit - 1])
    return ChildPage(tuple(keys))


__all__ = ["ChildPage", "ListsChildren", "page_of"]
