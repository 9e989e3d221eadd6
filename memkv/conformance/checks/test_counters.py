"""The counters of `stats` (MKV-OPS-020..024): a target need not report them, but each one it reports
counts what its name says, target-wide, and never decreases while the target runs.

Counters are target-wide, so other clients, other namespaces and the target's own background work
may add to them at any time: every comparison here is a lower bound on an increase (`>=`) over
what this check did, never an exact figure, so activity beside the check cannot fail it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from memkv.conformance.support import Context, check, payload
from memkv.errors import ErrorCode
from memkv.transport import PutItem, Transport

E = ErrorCode
KiB = 1024
MiB = 1024 * KiB
COUNTERS = ("puts", "gets", "hits", "misses", "evictions", "invalidations", "bytes_written", "bytes_read")
# blocks put one per request (a single-item put) and then in one batch: a store may count the two apart
SINGLE_SIZES = (1000, 70_000, 5000)
BATCH_SIZES = (3000, 131_072)
SMALL_CAPACITY, SMALL_BLOCK = 2 * MiB, 64 * KiB


def _shape_problems(stats: dict[str, Any]) -> dict[str, Any]:
    """The reported counters that are not what MKV-OPS-020 allows."""
    wrong = {name: stats[name] for name in COUNTERS if name in stats
             and (not isinstance(stats[name], int) or isinstance(stats[name], bool) or stats[name] < 0)}
    errors = stats.get("errors", {})
    if not isinstance(errors, dict) or not all(
            code in E.__members__ and isinstance(n, int) and not isinstance(n, bool) and n >= 0
            for code, n in errors.items()):
        wrong["errors"] = errors
    return wrong


class Snapshots:
    """The `stats` answers of one transport, each checked against MKV-OPS-020 and, against the one
    before it, MKV-OPS-021."""

    def __init__(self, transport: Transport, repro: str) -> None:
        self.transport, self.repro = transport, repro
        self.taken: list[dict[str, Any]] = []

    def take(self, when: str) -> dict[str, Any]:
        stats = self.transport.stats()
        wrong = _shape_problems(stats)
        check("MKV-OPS-020", not wrong, f"stats counters {when} are non-negative integers (errors: code name -> "
              "non-negative integer)", ">= 0 each", wrong, self.repro)
        if self.taken and self._comparable(self.taken[-1], stats):
            before = self.taken[-1]
            fell = {name: (before[name], stats[name]) for name in COUNTERS
                    if name in before and name in stats and stats[name] < before[name]}
            fell |= {f"errors.{code}": (n, stats.get("errors", {}).get(code, 0))
                     for code, n in before.get("errors", {}).items() if stats.get("errors", {}).get(code, 0) < n}
            check("MKV-OPS-021", not fell, f"no stats counter decreases ({when})", "each >= its previous value",
                  fell, self.repro)
        self.taken.append(stats)
        return stats

    @staticmethod
    def _comparable(before: dict[str, Any], after: dict[str, Any]) -> bool:
        """A cluster's sums may fall when a shard stops answering (MKV-OPS-021): compare only answers
        that name no unreachable shard."""
        return not before.get("unreachable_shards") and not after.get("unreachable_shards")

    def grew(self, requirement: str, name: str, at_least: int, what: str) -> None:
        """The counter `name` grew by at least `at_least` between the last two answers (if both report it)."""
        before, after = self.taken[-2], self.taken[-1]
        if name in before and name in after and self._comparable(before, after):
            check(requirement, after[name] - before[name] >= at_least, f"`{name}` grows by at least {what}",
                  f">= {at_least} more", f"{after[name] - before[name]} more ({before[name]} -> {after[name]})",
                  self.repro)


def _reports_any(stats: dict[str, Any], names: Sequence[str]) -> bool:
    """Whether the target reports any of these counters: they are optional (MKV-OPS-020), so a target
    that reports none conforms (and a skip would fail it in a claimed profile, MKV-PRO-001)."""
    return any(name in stats for name in names)


@pytest.mark.requirement("MKV-OPS-020", "MKV-OPS-021", "MKV-OPS-022", "MKV-OPS-023", "MKV-OPS-024")
def test_counters_count_puts_gets_and_removals(memkv: Context) -> None:
    t = memkv.transport()
    repro = (f"stats; put blocks of {SINGLE_SIZES} bytes one per request, then {BATCH_SIZES} in one batch; stats; "
             "get them and one absent key in one batch; stats; delete two, invalidate_keys one; stats")
    snaps = Snapshots(t, repro)
    if not _reports_any(snaps.take("at the start"), [*COUNTERS, "errors"]):
        return

    blocks = {memkv.key(): payload(60 + i, size) for i, size in enumerate(SINGLE_SIZES + BATCH_SIZES)}
    items = [PutItem(key, data) for key, data in blocks.items()]
    results = [t.put([item])[0] for item in items[: len(SINGLE_SIZES)]] + t.put(items[len(SINGLE_SIZES):])
    stored = [key for key, result in zip(blocks, results, strict=True) if result.ok]
    check("MKV-OPS-022", len(stored) == len(items), "puts of new keys in an empty namespace succeed", "OK each",
          [r.status.name for r in results], repro)
    snaps.take("after the puts")
    snaps.grew("MKV-OPS-022", "puts", len(stored), f"the {len(stored)} blocks stored")
    snaps.grew("MKV-OPS-022", "bytes_written", sum(len(blocks[key]) for key in stored), "the payload bytes stored")

    keys = [*blocks, memkv.key()]  # the last one was never put
    got = t.get_into(keys, [bytearray(max(len(blocks.get(k, b"")), 1)) for k in keys])
    hits = [(key, r) for key, r in zip(keys, got, strict=True) if r.ok]
    misses = sum(1 for r in got if r.status is E.NOT_FOUND)
    snaps.take("after the gets")
    snaps.grew("MKV-OPS-023", "hits", len(hits), f"the {len(hits)} get items answered OK")
    snaps.grew("MKV-OPS-023", "bytes_read", sum(r.length for _, r in hits), "the bytes those items returned")
    snaps.grew("MKV-OPS-023", "misses", misses, f"the {misses} get items answered NOT_FOUND")
    snaps.grew("MKV-OPS-023", "gets", len(hits) + misses, "the get items answered OK or NOT_FOUND")

    deleted = sum(1 for r in t.delete(list(blocks)[:2]) if r.ok)
    invalidated = t.invalidate_keys([list(blocks)[2]])
    snaps.take("after the removals")
    snaps.grew("MKV-OPS-024", "invalidations", deleted + invalidated,
               f"the {deleted} blocks deleted and the {invalidated} invalidated")


@pytest.mark.requirement("MKV-OPS-020", "MKV-OPS-021", "MKV-OPS-024")
def test_counters_count_evictions(memkv: Context) -> None:
    if not _reports_any(memkv.transport().stats(), ["evictions"]):
        return  # before asking for a small instance, which a target without the counter need not offer
    small, t = memkv.empty_small(SMALL_CAPACITY)
    count = SMALL_CAPACITY // SMALL_BLOCK * 2
    repro = f"a small target of {SMALL_CAPACITY} bytes: stats; put {count} blocks of {SMALL_BLOCK} bytes; stats"
    snaps = Snapshots(t, repro)
    snaps.take("at the start")
    keys = [small.key() for _ in range(count)]
    stored = [key for i, key in enumerate(keys) if t.put([PutItem(key, payload(90 + i, SMALL_BLOCK))])[0].ok]
    evicted = sum(1 for present in t.exists(stored) if not present)
    snaps.take("after filling the target twice over")
    snaps.grew("MKV-OPS-024", "evictions", evicted, f"the {evicted} blocks of this check evicted to make room")
