"""Checking histories of concurrent clients per key (Jepsen style): invoke/complete with outcomes.

Each operation is one record: client, op (put/get/invalidate), key, start, end (a clock shared by
the processes: CLOCK_MONOTONIC), status (an error code name, or UNKNOWN) and value. A put's value
names the self-describing payload it wrote; a get's value is the hex of the bytes it read.
"""

from __future__ import annotations

import itertools
from typing import Any

from .support import payload_ok


def check_history(history: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Violations as (requirement, description); empty when the history is allowed."""
    problems: list[tuple[str, str]] = []
    by_key: dict[int, list[dict[str, Any]]] = {}
    for op in history:
        by_key.setdefault(op["key"], []).append(op)
    for key, ops in by_key.items():
        puts = [o for o in ops if o["op"] == "put"]
        removals = [o for o in ops if o["op"] == "invalidate"]
        written = {o["value"]["seed"]: o for o in puts if o["status"] in ("OK", "UNKNOWN", "KEY_CONFLICT")}
        reads = [o for o in ops if o["op"] == "get" and o["status"] == "OK"]
        for r in reads:
            data = bytes.fromhex(r["value"])
            if not payload_ok(data):
                problems.append(("MKV-OPS-012", f"key {key}: client {r['client']} read a torn or mixed block "
                                 f"({len(data)} bytes)"))
                continue
            seed = int.from_bytes(data[8:16], "little")
            source = written.get(seed)
            if source is None or source["start"] > r["end"]:
                problems.append(("MKV-OPS-012", f"key {key}: client {r['client']} read bytes no put had written"))
                continue
            # invalidation observed by every client after it returns (MKV-INV-007)
            for inv in removals:
                if inv["status"] == "OK" and inv["end"] < r["start"] and source["end"] < inv["start"]:
                    rewritten = any(p["value"]["seed"] == seed and p["end"] > inv["start"] for p in puts)
                    if not rewritten:
                        problems.append(("MKV-INV-007", f"key {key}: client {r['client']} read a block put before "
                                         f"an invalidation that returned {r['start'] - inv['end']:.4f} s earlier"))
                        break
        # read-after-commit: a get invoked after a put returned OK sees a block, unless a removal overlaps
        for r in (o for o in ops if o["op"] == "get" and o["status"] == "NOT_FOUND"):
            for p in puts:
                if p["status"] == "OK" and p["end"] < r["start"]:
                    removed = any(inv["start"] < r["end"] for inv in removals)
                    if not removed:
                        problems.append(("MKV-OPS-012", f"key {key}: client {r['client']} got NOT_FOUND after client "
                                         f"{p['client']}'s put had returned"))
                        break
        # immutability: between removals, all reads return the same block
        ordered = sorted(reads, key=lambda o: o["start"])
        for a, b in itertools.pairwise(ordered):
            both_whole = payload_ok(bytes.fromhex(a["value"])) and payload_ok(bytes.fromhex(b["value"]))
            removed = any(inv["start"] < b["end"] and inv["end"] > a["start"] for inv in removals)
            if a["value"] != b["value"] and both_whole and not removed and a["end"] < b["start"]:
                problems.append(("MKV-BLK-007", f"key {key}: a stored block changed between two reads with no "
                                 "invalidation in between"))
    return problems


__all__ = ["check_history"]
