"""Power cuts at random writes and commits, then reopen (MKV-DUR-002, MKV-DUR-004, MKV-DUR-011).

memkv/store/powercut.py loses every write not yet made durable; these runs must show 0 lost,
0 resurrected, 0 corrupt. The last tests weaken the store on purpose and require the simulator
to notice: a check that cannot fail proves nothing.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from memkv.store.index import Index
from memkv.store.io_engines import uring_status
from memkv.store.powercut import StableStorage, simulate


@pytest.mark.requirement("MKV-DUR-002", "MKV-DUR-004", "MKV-DUR-011", "MKV-DUR-003")
@pytest.mark.parametrize("io,cycles", [("threads", 20), pytest.param("uring", 8, marks=pytest.mark.skipif(
    not uring_status()[0], reason="io_uring is not available here"))])
def test_power_cuts_lose_nothing_durable_and_bring_nothing_back(tmp_path: Path, io: str, cycles: int) -> None:
    report = simulate(str(tmp_path / "store"), cycles=cycles, seed=17, io=io)
    assert report.cycles == cycles and report.acknowledged_puts > 10 * cycles and report.removals > 5 * cycles
    assert report.durable_checked > 5 * cycles, "too little was durable to prove anything"
    assert report.violations == []
    assert (report.lost, report.resurrected, report.corrupt) == (0, 0, 0)


@pytest.mark.requirement("MKV-DUR-011")
def test_the_simulator_sees_removals_that_are_not_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Index, "durable", lambda self: contextlib.nullcontext())
    report = simulate(str(tmp_path / "store"), cycles=15, seed=17)
    assert report.resurrected > 0


@pytest.mark.requirement("MKV-DUR-002")
def test_the_simulator_sees_a_device_whose_fdatasync_lies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The index is made durable by its checkpoint, the payloads never are: durable blocks break."""
    monkeypatch.setattr(StableStorage, "synced", lambda self: None)
    report = simulate(str(tmp_path / "store"), cycles=15, seed=17)
    assert report.lost + report.corrupt > 0
