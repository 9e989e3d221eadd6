"""Eviction order of cached blocks: plain LRU, and chain order that keeps prefixes usable.

Pure (no I/O): the store (memkv/store) and the planner's simulator (memkv/plan) drive the same
classes with the same calls, so a workload replayed through either evicts the same blocks.

`ChainOrder` (MKV-CAP-006..009) is LRU with one rule added: a block is never evicted before a
block chained after it. A use of a block counts as a use of each stored block it is chained
after (its parent, the parent's parent, ...), placed just behind it, so the tail of a chain is
always older than its head. Blocks whose chain is cut (some ancestor is not stored, so no lookup
can reach them) are kept in a separate queue that is evicted first, tail first as well.

Both orders are a list from "evict first" to "evict last": a use moves blocks to the end.
`ChainOrder` keeps the path of the last use outside its queues ("staged", deepest block first
in eviction order) so that a chain used block after block from its head, as an engine reloads
or stores a prefix, costs O(1) per block instead of O(depth).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, Literal, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)
PolicyName = Literal["lru", "chain"]
POLICIES: tuple[PolicyName, ...] = ("lru", "chain")


class EvictionOrder(Protocol[K]):
    """The order in which stored blocks are evicted."""

    def add(self, block: K, parent: K | None) -> None:
        """A block was stored (a use); `parent` is the block it is chained after, None for a head."""

    def use(self, block: K) -> None:
        """A stored block was read (a use)."""

    def discard(self, block: K) -> None:
        """A block left the store (evicted, deleted, invalidated)."""

    def candidates(self, keep: Callable[[K], bool] = ...) -> Iterator[K]:
        """Stored blocks in eviction order, skipping those `keep` holds (and, for chain order, the
        blocks such a block is chained after). The caller must not change the order while iterating."""

    def __len__(self) -> int: ...

    def __contains__(self, block: object) -> bool: ...


def _never(block: object) -> bool:
    return False


class LruOrder(Generic[K]):
    """Least recently used first; storing and reading a block are uses."""

    def __init__(self) -> None:
        self._order: OrderedDict[K, None] = OrderedDict()

    def add(self, block: K, parent: K | None) -> None:
        self._order[block] = None
        self._order.move_to_end(block)

    def use(self, block: K) -> None:
        self._order.move_to_end(block)

    def discard(self, block: K) -> None:
        self._order.pop(block, None)

    def candidates(self, keep: Callable[[K], bool] = _never) -> Iterator[K]:
        return (block for block in self._order if not keep(block))

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, block: object) -> bool:
        return block in self._order


class ChainOrder(Generic[K]):
    """LRU in which a block always goes after every stored block chained after it."""

    def __init__(self) -> None:
        self._parent: dict[K, K | None] = {}
        self._children: dict[K, set[K]] = {}
        """Stored blocks by the key they are chained after (that key may not be stored)."""
        self._cut: OrderedDict[K, None] = OrderedDict()
        """Blocks with an ancestor missing: unreachable by a lookup, evicted first."""
        self._rooted: OrderedDict[K, None] = OrderedDict()
        self._staged: list[K] = []
        """The last use's path, head first: logically at the end of `_staged_queue`, deepest first."""
        self._staged_set: set[K] = set()
        self._staged_queue = self._rooted

    # ---- the staged path ------------------------------------------------------------------------
    def _flush(self) -> None:
        queue = self._staged_queue
        for block in reversed(self._staged):
            queue[block] = None
        self._staged = []
        self._staged_set = set()

    def _place(self, block: K) -> None:
        """Move `block` and its stored ancestors to the end of the order, the block first."""
        if self._staged and self._parent[block] == self._staged[-1] and block not in self._staged_set:
            self._rooted.pop(block, None)
            self._cut.pop(block, None)
            self._staged.append(block)
            self._staged_set.add(block)
            return
        self._flush()
        path: list[K] = []
        seen: set[K] = set()
        node: K | None = block
        while node is not None and node in self._parent and node not in seen:
            seen.add(node)
            path.append(node)
            node = self._parent[node]
        queue = self._rooted if node is None else self._cut
        for step in path:
            self._rooted.pop(step, None)
            self._cut.pop(step, None)
        path.reverse()
        self._staged, self._staged_set, self._staged_queue = path, seen, queue

    # ---- the EvictionOrder interface --------------------------------------------------------------
    def add(self, block: K, parent: K | None) -> None:
        if block in self._parent:
            self.use(block)
            return
        if parent == block:
            parent = None
        self._parent[block] = parent
        if parent is not None:
            self._children.setdefault(parent, set()).add(block)
        below = self._children.get(block)
        if below:
            self._flush()
        self._place(block)
        if below and self._staged_queue is self._rooted:
            # Blocks stored before this one were cut; their chain is complete again. They become
            # the first complete blocks to go (older than anything used since), tail first.
            for node in reversed(self._subtrees(below)):
                self._cut.pop(node, None)
                self._rooted[node] = None
                self._rooted.move_to_end(node, last=False)

    def use(self, block: K) -> None:
        if block in self._parent:
            self._place(block)

    def discard(self, block: K) -> None:
        if block not in self._parent:
            return
        if block in self._staged_set:
            self._flush()
        self._rooted.pop(block, None)
        self._cut.pop(block, None)
        parent = self._parent.pop(block)
        if parent is not None:
            siblings = self._children[parent]
            siblings.discard(block)
            if not siblings:
                del self._children[parent]
        orphans = self._children.get(block)
        if orphans:
            self._flush()
            self._cut_below(orphans)

    def discard_subtree(self, block: K) -> int:
        """Remove `block` and every stored block chained after it, tail first; how many went."""
        if block not in self._parent:
            return 0
        gone = self._subtrees({block})
        for node in gone:
            self.discard(node)
        return len(gone)

    def _cut_below(self, heads: set[K]) -> None:
        """Move the subtrees of `heads` to the end of the cut queue, descendants first."""
        for node in self._subtrees(heads):
            self._rooted.pop(node, None)
            self._cut.pop(node, None)
            self._cut[node] = None

    def _subtrees(self, heads: set[K]) -> list[K]:
        """The stored blocks of the subtrees under `heads`, each after every block below it."""
        postorder: list[K] = []
        stack: list[tuple[K, bool]] = [(head, False) for head in heads]
        seen: set[K] = set()
        while stack:
            node, expanded = stack.pop()
            if expanded:
                postorder.append(node)
                continue
            if node in seen:
                continue
            seen.add(node)
            stack.append((node, True))
            stack.extend((child, False) for child in self._children.get(node, ()))
        return postorder

    def candidates(self, keep: Callable[[K], bool] = _never) -> Iterator[K]:
        held: set[K] = set()
        for block in self._in_order():
            if block in held or keep(block):
                parent = self._parent[block]
                if parent is not None:
                    held.add(parent)
                continue
            yield block

    def _in_order(self) -> Iterator[K]:
        yield from self._cut
        if self._staged_queue is self._cut:
            yield from reversed(self._staged)
        yield from self._rooted
        if self._staged_queue is self._rooted:
            yield from reversed(self._staged)

    def order(self) -> list[K]:
        """Every stored block, first to be evicted first (for tests and reports)."""
        return list(self._in_order())

    def __len__(self) -> int:
        return len(self._parent)

    def __contains__(self, block: object) -> bool:
        return block in self._parent


def make_order(policy: PolicyName) -> LruOrder[K] | ChainOrder[K]:
    if policy == "lru":
        return LruOrder()
    if policy == "chain":
        return ChainOrder()
    raise ValueError(f"unknown eviction policy {policy!r}; known: {', '.join(POLICIES)}")


__all__ = ["POLICIES", "ChainOrder", "EvictionOrder", "LruOrder", "PolicyName", "make_order"]
