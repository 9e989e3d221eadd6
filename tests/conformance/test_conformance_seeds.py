"""The seed of a conformance run (memkv/conformance/seeds.py): asked for, pinned, or fresh."""

from __future__ import annotations

import pytest

from memkv.conformance.seeds import SEED_ENV, run_seed


def test_a_given_seed_wins_then_the_pinned_one_then_a_fresh_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SEED_ENV, "4242")
    assert run_seed(7) == 7 and run_seed(None) == 4242
    monkeypatch.delenv(SEED_ENV)
    draws = {run_seed(None) for _ in range(8)}
    assert len(draws) > 1 and all(0 <= d < 2**31 for d in draws)
    monkeypatch.setenv(SEED_ENV, "soon")
    with pytest.raises(ValueError, match=SEED_ENV):
        run_seed(None)
