"""Hypothesis properties inside conformance checks: shapes drawn, and shrunk when one fails.

A check states a property as a function of drawn values and runs it with `prove`; the run's seed
fixes the draws (a certification draws new ones each run, `--seed` replays them), the run's example
count bounds them, and a failure is shrunk to a minimal shape before it is reported, with that
shape and the seed in the reproduction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from .support import Context, RequirementFailure

KiB = 1024
MiB = 1024 * KiB
#: where a target is likely to cut a payload: pages, common piece and chunk sizes
PIECE_BOUNDARIES = (4 * KiB, 64 * KiB, MiB)


def block_sizes(largest: int) -> st.SearchStrategy[int]:
    """1 byte .. `largest`, half of the draws within 2 bytes of a piece boundary or of `largest`."""
    edges = [b for b in (*PIECE_BOUNDARIES, largest) if b <= largest]
    near_edge = st.sampled_from(edges).flatmap(lambda b: st.integers(max(1, b - 2), min(largest, b + 2)))
    return st.one_of(near_edge, st.integers(1, largest))


def prove(memkv: Context, body: Callable[..., None], examples: int | None = None, **strategies: Any) -> None:
    """Run `body(**drawn)` for up to `examples` (default: the run's count) draws of `strategies`."""
    last: dict[str, Any] = {}

    def recorded(**drawn: Any) -> None:
        last.clear()
        last.update(drawn)  # Hypothesis replays the minimal failing example last
        body(**drawn)

    test = given(**strategies)(recorded)
    run = settings(max_examples=examples or memkv.examples, deadline=None, database=None, print_blob=False,
                   phases=[p for p in Phase if p is not Phase.explain],
                   suppress_health_check=list(HealthCheck))(seed(memkv.seed)(test))
    try:
        run()
    except RequirementFailure as exc:
        shape = ", ".join(f"{name}={value!r}" for name, value in last.items())
        exc.reproduction = (f"seed {memkv.seed} (replay: --seed {memkv.seed}), shrunk to {body.__name__}({shape[:600]})"
                            f"\n{exc.reproduction}")
        raise


__all__ = ["PIECE_BOUNDARIES", "block_sizes", "prove"]
