"""The seed of a conformance run: the one asked for, else one the environment pins, else a fresh one.

A certification draws a fresh seed per run so that successive runs walk different paths. A test
suite that must not fail by the draw (memkv's own CI: tox sets it) pins one with
MEMKV_CONFORMANCE_SEED; `--seed` / `--memkv-seed` still win.
"""

from __future__ import annotations

import os
import random

SEED_ENV = "MEMKV_CONFORMANCE_SEED"


def run_seed(given: int | None) -> int:
    """`given`, else the integer in $MEMKV_CONFORMANCE_SEED, else a random one."""
    if given is not None:
        return given
    pinned = os.environ.get(SEED_ENV, "").strip()
    if pinned:
        try:
            return int(pinned)
        except ValueError:
            raise ValueError(f"{SEED_ENV} must be an integer, not {pinned!r}") from None
    return random.randrange(2**31)


__all__ = ["SEED_ENV", "run_seed"]
