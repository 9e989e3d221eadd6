"""memkv.nixl.support.Pump: one thread polls the agent at a time, and a thread that waits for
notifications can poll it itself (drive) instead of handing off to the pump's thread.

The agent here is a stand-in (the pump never imports NIXL): it hands out queued notifications and
records whether two threads ever polled it at once."""

from __future__ import annotations

import threading
import time

import pytest

from memkv.errors import Unavailable
from memkv.nixl.support import Pump


class _Agent:
    """Answers notifications() with what was queued; notes overlapping polls and the polling threads."""

    def __init__(self) -> None:
        self.queued: dict[str, list[bytes]] = {}
        self.lock = threading.Lock()
        self.inside = 0
        self.overlapped = False
        self.pollers: set[int] = set()

    def queue(self, peer: str, notif: bytes) -> None:
        with self.lock:
            self.queued.setdefault(peer, []).append(notif)

    def notifications(self) -> dict[str, list[bytes]]:
        with self.lock:
            self.inside += 1
            self.overlapped |= self.inside > 1
            self.pollers.add(threading.get_ident())
        time.sleep(0.0002)  # long enough for a second poller to overlap, were it allowed
        with self.lock:
            self.inside -= 1
            out, self.queued = self.queued, {}
        return out


def _pump(agent: _Agent) -> tuple[Pump, list[tuple[int, bytes]]]:
    seen: list[tuple[int, bytes]] = []
    pump = Pump(agent, lambda notifs: seen.extend((threading.get_ident(), n) for v in notifs.values()  # type: ignore[arg-type]
                                                  for n in v))
    return pump, seen


def test_drive_polls_in_the_calling_thread_until_ready() -> None:
    agent = _Agent()
    pump, seen = _pump(agent)
    timer = threading.Timer(0.05, agent.queue, ("client", b"piece-0"))
    timer.start()
    try:
        assert pump.drive(lambda: bool(seen), time.monotonic() + 10)
    finally:
        timer.cancel()
        pump.close()
    me = threading.get_ident()
    assert seen == [(me, b"piece-0")]  # taken in here: no hand-off from another thread
    assert agent.pollers == {me}


def test_drive_gives_up_at_its_deadline() -> None:
    pump, seen = _pump(_Agent())
    started = time.monotonic()
    assert not pump.drive(lambda: bool(seen), started + 0.05)
    assert time.monotonic() - started >= 0.05
    pump.close()


def test_drive_returns_at_once_when_ready() -> None:
    agent = _Agent()
    pump, _ = _pump(agent)
    assert pump.drive(lambda: True, time.monotonic() - 1)  # ready wins over a past deadline
    assert agent.pollers == set()
    pump.close()


def test_a_closed_pump_stops_a_drive_with_unavailable() -> None:
    pump, seen = _pump(_Agent())
    threading.Timer(0.05, pump.close).start()
    with pytest.raises(Unavailable, match="shutting down"):
        pump.drive(lambda: bool(seen), time.monotonic() + 10)


def test_one_thread_polls_at_a_time_and_every_waiter_sees_its_notification() -> None:
    agent = _Agent()
    pump, seen = _pump(agent)
    pump.enter()  # the pump's own thread polls too (another operation is in flight)
    results: dict[int, bool] = {}

    def wait_for(k: int) -> None:
        results[k] = pump.drive(lambda: any(n == f"piece-{k}".encode() for _, n in seen), time.monotonic() + 10)

    waiters = [threading.Thread(target=wait_for, args=(k,)) for k in range(4)]
    try:
        for thread in waiters:
            thread.start()
        for k in range(4):
            time.sleep(0.01)
            agent.queue("client", f"piece-{k}".encode())
        for thread in waiters:
            thread.join(timeout=20)
    finally:
        pump.leave()
        pump.close()
    assert results == {0: True, 1: True, 2: True, 3: True}
    assert not agent.overlapped
    assert len(agent.pollers) >= 2  # the driving threads and the pump's thread took turns


def test_a_ready_check_that_raises_stops_the_drive_and_frees_the_poller() -> None:
    agent = _Agent()
    pump, seen = _pump(agent)

    checks = iter([False, False])

    def ended() -> bool:  # not ready twice (this thread takes the poller), then the credit ends
        if next(checks, None) is None:
            raise RuntimeError("the credit ended")
        return False

    try:
        pump.drive(ended, time.monotonic() + 10)
    except RuntimeError:
        pass
    else:
        raise AssertionError("drive swallowed the ready check's error")
    agent.queue("client", b"later")
    assert pump.drive(lambda: bool(seen), time.monotonic() + 10)  # the poller was released
    pump.close()
