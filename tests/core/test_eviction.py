"""The pure eviction orders of memkv.eviction: chain order against a naive model of its definition."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from memkv.eviction import ChainOrder, LruOrder, make_order


class NaiveChainOrder:
    """MKV-CAP-006/008 written the slow, obvious way: one list, every use walks up the chain."""

    def __init__(self) -> None:
        self.parent: dict[int, int | None] = {}
        self.order: list[int] = []

    def _move_up(self, block: int) -> None:
        path, node, seen = [], block, set()
        while node is not None and node in self.parent and node not in seen:
            seen.add(node)
            path.append(node)
            node = self.parent[node]
        for step in path:
            self.order.remove(step)
            self.order.append(step)

    def add(self, block: int, parent: int | None) -> None:
        if block not in self.parent:
            self.parent[block] = parent
            self.order.append(block)
        self._move_up(block)

    def use(self, block: int) -> None:
        if block in self.parent:
            self._move_up(block)

    def discard(self, block: int) -> None:
        if block in self.parent:
            del self.parent[block]
            self.order.remove(block)

    def cut(self, block: int) -> bool:
        node, seen = block, set()
        while node in self.parent and node not in seen:
            seen.add(node)
            parent = self.parent[node]
            if parent is None:
                return False
            node = parent
        return True


def _has_stored_descendant_later(order: list[int], parent: dict[int, int | None]) -> list[tuple[int, int]]:
    """(ancestor, child) pairs where the ancestor would be evicted before its stored child."""
    position = {b: i for i, b in enumerate(order)}
    return [(p, b) for b, p in parent.items() if p is not None and p in position and position[p] < position[b]]


def test_in_order_reload_keeps_the_head_last() -> None:
    """The defect of the issue: after an in-order reload plain LRU evicts the head first."""
    lru: LruOrder[int] = LruOrder()
    chain: ChainOrder[int] = ChainOrder()
    for order in (lru, chain):
        order.add(100, None)  # an unrelated block, stored first
        for i in range(6):
            order.add(i, i - 1 if i else None)
        for i in range(6):
            order.use(i)
    assert next(lru.candidates()) == 100
    assert list(lru.candidates())[1] == 0  # LRU: the head goes right after, 5 dead blocks left
    assert list(chain.candidates()) == [100, 5, 4, 3, 2, 1, 0]


def test_kept_block_keeps_its_ancestors() -> None:
    chain: ChainOrder[int] = ChainOrder()
    for i in range(4):
        chain.add(i, i - 1 if i else None)
    assert list(chain.candidates(keep=lambda b: b == 3)) == []
    assert list(chain.candidates(keep=lambda b: b == 1)) == [3, 2]


def test_cut_chain_goes_first_tail_first() -> None:
    chain: ChainOrder[int] = ChainOrder()
    for i in range(4):
        chain.add(i, i - 1 if i else None)
    chain.add(10, None)
    chain.discard(1)  # 2 and 3 can no longer be reached by a lookup
    assert chain.order() == [3, 2, 0, 10]
    chain.add(20, 99)  # stored after a block that is not stored: cut as well
    assert chain.order()[:3] == [3, 2, 20]


def test_make_order_refuses_unknown_policy() -> None:
    try:
        make_order("fifo")  # type: ignore[arg-type]
    except ValueError as exc:
        assert "fifo" in str(exc)
    else:
        raise AssertionError("an unknown policy was accepted")


_ops = st.lists(st.tuples(st.sampled_from(["add", "use", "discard"]), st.integers(0, 11), st.integers(-1, 11)),
                max_size=80)


@settings(max_examples=300, deadline=None)
@given(_ops)
def test_chain_order_equals_its_definition(ops: list[tuple[str, int, int]]) -> None:
    """Random adds, uses and discards (cycles and missing parents included): cut blocks go first;
    without cuts the order is the naive model's; no block precedes a stored block chained after it."""
    fast: ChainOrder[int] = ChainOrder()
    slow = NaiveChainOrder()
    ever_cut = False
    for op, block, parent_raw in ops:
        parent = None if parent_raw < 0 or parent_raw == block else parent_raw
        if op == "add":
            fast.add(block, parent)
            slow.add(block, parent)
        elif op == "use":
            fast.use(block)
            slow.use(block)
        else:
            fast.discard(block)
            slow.discard(block)
        assert len(fast) == len(slow.parent)
        ever_cut = ever_cut or any(slow.cut(b) for b in slow.parent)
    assert set(fast.order()) == set(slow.order)
    order = fast.order()
    cut = [b for b in order if slow.cut(b)]
    assert order[: len(cut)] == cut, "cut chains go first"
    if not ever_cut:  # the naive model has no cut queue: its order is comparable only without cuts
        assert order == slow.order
    if not any(slow.cut(b) for b in slow.parent):
        assert not _has_stored_descendant_later(order, slow.parent)
