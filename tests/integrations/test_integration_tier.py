"""A slow or dead server becomes misses and dropped stores, never an engine error (MKV-INT-004)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from memkv.errors import Unavailable
from memkv.integrations.tier import MAX_BATCH, GuardedTier, TierSettings
from memkv.server.testing import ServerProcess
from memkv.transport import PutItem, Transport

KEYS = [bytes([i]) * 16 for i in range(1, 4)]


def _payload(i: int) -> bytes:
    return bytes((i * 7 + j) % 251 for j in range(4096))


def _settings(server: ServerProcess, **overrides: object) -> TierSettings:
    options: dict[str, object] = {"url": server.url, "namespace": "engine", "deadline_s": 1.0,
                                  "connect_timeout_s": 1.0, "retry_interval_s": 0.2}
    return TierSettings.from_options(options | overrides)


@pytest.mark.requirement("MKV-INT-004")
def test_store_lookup_load_byte_exact(memkv_server: ServerProcess) -> None:
    tier = GuardedTier(_settings(memkv_server))
    try:
        assert tier.store([PutItem(k, _payload(i)) for i, k in enumerate(KEYS[:2])]) == [True, True]
        assert tier.exists(KEYS) == [True, True, False]
        assert tier.prefix_length(KEYS) == 2
        buffers = [bytearray(4096) for _ in KEYS]
        assert tier.load_into(KEYS, buffers) == [4096, 4096, None]
        assert [bytes(b) for b in buffers[:2]] == [_payload(0), _payload(1)]
        assert tier.counters.failures == 0
    finally:
        tier.close()


@pytest.mark.requirement("MKV-INT-004")
def test_calls_larger_than_one_request_are_split_not_failed(tmp_path: Path) -> None:
    count = 2 * MAX_BATCH + 3  # an engine batch (SGLang: 128 pages x parts per page) can exceed one request
    keys = [(i + 1).to_bytes(4, "big") * 4 for i in range(count)]
    payloads = [i.to_bytes(4, "big") * 16 for i in range(count)]
    server = ServerProcess(str(tmp_path / "store"), capacity="16MiB", extra=["--unit", "4KiB"])  # room for all
    tier = GuardedTier(_settings(server, deadline_s=30.0))  # a shared CI machine: no deadline in play
    try:
        assert tier.store([PutItem(k, p) for k, p in zip(keys, payloads, strict=True)]) == [True] * count
        assert tier.prefix_length(keys) == count
        buffers = [bytearray(64) for _ in keys]
        assert tier.load_into(keys, buffers) == [64] * count
        assert [bytes(b) for b in buffers] == payloads
        assert tier.read(keys[-2:]) == payloads[-2:] and tier.delete(keys) == count
        assert tier.counters.failures == 0
    finally:
        tier.close()
        server.kill()


@pytest.mark.requirement("MKV-INT-004")
def test_a_killed_server_gives_misses(memkv_server: ServerProcess) -> None:
    tier = GuardedTier(_settings(memkv_server))
    try:
        assert tier.store([PutItem(KEYS[0], _payload(0))]) == [True]
        memkv_server.kill()
        assert tier.exists(KEYS) == [False] * 3
        assert tier.load_into(KEYS[:1], [bytearray(4096)]) == [None]
        assert tier.store([PutItem(KEYS[1], _payload(1))]) == [False]
        assert tier.counters.failures >= 1 and tier.counters.skipped_while_down >= 1
        assert not tier.available
    finally:
        tier.close()


def _stop(pid: int) -> None:
    """SIGSTOP, returning once every thread of the process is stopped: the signal takes effect
    asynchronously, and a server thread still running could answer the next request."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = [stat.read_text().rsplit(")", 1)[1].split()[0] for stat in Path(f"/proc/{pid}/task").glob("*/stat")]
        if states and all(state in ("T", "t") for state in states):
            return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} did not stop: thread states {states}")


@pytest.mark.requirement("MKV-INT-004")
def test_a_stopped_server_costs_one_deadline_and_the_backlog_is_bounded(memkv_server: ServerProcess) -> None:
    tier = GuardedTier(_settings(memkv_server, deadline_s=0.5, retry_interval_s=30, max_pending_stores=1))
    try:
        assert tier.exists(KEYS[:1]) == [False]  # connected
        _stop(memkv_server.proc.pid)
        try:
            started = time.monotonic()
            assert tier.submit_store([PutItem(KEYS[0], _payload(0))])
            assert not tier.submit_store([PutItem(KEYS[1], _payload(1))])  # backlog of one is full
            assert tier.counters.dropped_stores == 1
            tier.drain(timeout_s=30)
            assert tier.exists(KEYS[:1]) == [False]  # down: answered without a network round
            elapsed = time.monotonic() - started
        finally:
            os.kill(memkv_server.proc.pid, signal.SIGCONT)
        assert tier.counters.failures == 1 and tier.counters.skipped_while_down >= 1
        assert elapsed < 15, f"a stopped server held the engine {elapsed:.1f} s with a 0.5 s deadline"
    finally:
        tier.close()


@pytest.mark.requirement("MKV-INT-004")
def test_no_call_reaches_the_target_within_the_retry_interval() -> None:
    opened: list[float] = []

    def refusing(settings: TierSettings) -> Transport:
        opened.append(time.monotonic())
        raise Unavailable("no server")

    tier = GuardedTier(TierSettings(url="memkv+tcp://127.0.0.1:1", retry_interval_s=60), opener=refusing)
    try:
        for _ in range(5):
            assert tier.exists(KEYS) == [False] * 3
            assert tier.load_into(KEYS[:1], [bytearray(1)]) == [None]
            assert tier.store([PutItem(KEYS[0], b"x")]) == [False]
        assert len(opened) == 1
        assert tier.counters.failures == 1 and tier.counters.skipped_while_down == 14
    finally:
        tier.close()


def test_settings_refuse_unknown_or_bad_options() -> None:
    with pytest.raises(Exception, match="unknown memkv adapter option"):
        TierSettings.from_options({"url": "memkv+tcp://h:1", "deadline": 1})
    with pytest.raises(Exception, match="not a float"):
        TierSettings.from_options({"url": "memkv+tcp://h:1", "deadline_s": "soon"})
    with pytest.raises(Exception, match="positive"):
        TierSettings.from_options({"url": "memkv+tcp://h:1", "deadline_s": 0})
