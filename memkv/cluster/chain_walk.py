"""Following a chain of blocks across shards (spec/cluster.md MKV-CLU-013, MKV-CLU-041).

A shard knows the parent links of its own blocks only. The walk asks every shard, one level at a
time, for the children of the keys found so far (CHILDREN, MKV-WIRE-044); the levels are then
removed deepest first, so that an invalidation that fails half-way can be repeated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from ..children import ListsChildren
from ..errors import Unsupported
from ..transport import Transport


def chunks(keys: Sequence[bytes], size: int) -> Iterator[list[bytes]]:
    for start in range(0, len(keys), size):
        yield list(keys[start : start + size])


def children_on(transport: Transport, parents: Sequence[bytes], batch: int) -> list[bytes]:
    """Every child one shard stores of `parents`: requests of at most `batch` parents, page by page."""
    if not isinstance(transport, ListsChildren):
        raise Unsupported(f"a {type(transport).__name__} cannot list the children of blocks")
    found: list[bytes] = []
    for part in chunks(parents, batch):
        after: bytes | None = None
        while True:
            page = transport.children(part, after)
            found.extend(page.keys)
            if page.next is None:
                break
            after = page.next
    return found


def walk(root: bytes, children_everywhere: Callable[[list[bytes]], list[bytes]]) -> list[list[bytes]]:
    """The levels of the tree under `root`: level 0 is [root], each next level the new children of the
    one before (a key met again, by a cycle of parent links, is not followed twice)."""
    seen = {root}
    levels = [[root]]
    while True:
        found = [k for k in dict.fromkeys(children_everywhere(levels[-1])) if k not in seen]
        if not found:
            return levels
        seen.update(found)
        levels.append(found)


__all__ = ["children_on", "chunks", "walk"]
