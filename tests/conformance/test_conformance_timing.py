"""memkv.conformance.timing: limits that only ever stretch on a busy machine."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from memkv.conformance import timing


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    timing.factor.cache_clear()
    yield
    # the factor is cached per process: later tests (the per-backend conformance checks of the same
    # run) must measure the real load, not keep the one these tests faked
    timing.factor.cache_clear()


def test_the_env_factor_wins_and_is_clamped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(timing.FACTOR_ENV, "2.5")
    assert timing.scaled(10) == pytest.approx(25)
    timing.factor.cache_clear()
    monkeypatch.setenv(timing.FACTOR_ENV, "0.1")
    assert timing.factor() == 1.0  # never shorter than stated
    timing.factor.cache_clear()
    monkeypatch.setenv(timing.FACTOR_ENV, "1000")
    assert timing.factor() == timing.MAX_FACTOR
    timing.factor.cache_clear()
    monkeypatch.setenv(timing.FACTOR_ENV, "fast")
    with pytest.raises(ValueError, match=timing.FACTOR_ENV):
        timing.factor()


def test_the_measured_factor_follows_the_load_per_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(timing.FACTOR_ENV, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (6.0, 0.0, 0.0))
    assert timing.factor() == pytest.approx(3.0)
    timing.factor.cache_clear()
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 0.0, 0.0))
    assert timing.factor() == 1.0
