"""One process owns a store: a second opener gets STORE_LOCKED naming the holder (MKV-DUR-006)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from helpers_crash import CAPACITY, UNIT, child

from memkv.errors import ErrorCode, StoreLocked
from memkv.store.embedded import FileTransport
from memkv.store.engine import StorageEngine


@pytest.mark.requirement("MKV-DUR-006")
def test_second_process_gets_store_locked_naming_the_holder(store_dir: Path) -> None:
    holder = child("hold", store_dir)
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLocked) as info:
            StorageEngine(str(store_dir), capacity=CAPACITY, unit=UNIT)
        assert info.value.code is ErrorCode.STORE_LOCKED
        assert f"pid {holder.pid}" in info.value.message
        with pytest.raises(StoreLocked):
            FileTransport.open(str(store_dir))
        # the refused opener changed nothing: the holder still owns the lock file's record
        assert f'"pid": {holder.pid}' in (store_dir / "lock").read_text()
        holder.stdin.close()
        assert holder.wait(10) == 0
    finally:
        holder.kill()
        holder.wait(10)
        holder.stdout.close()
        if holder.stderr:
            holder.stderr.close()
    engine = StorageEngine(str(store_dir), flush_interval_s=3600)  # free again once the holder left
    try:
        probe = child("try", store_dir)
        out, _ = probe.communicate(timeout=30)
        assert out.startswith("STORE_LOCKED") and f"pid {os.getpid()}" in out, out
    finally:
        engine.close()
    probe = child("try", store_dir)
    out, _ = probe.communicate(timeout=30)
    assert out.strip() == "opened"


@pytest.mark.requirement("MKV-DUR-006")
def test_a_killed_holder_does_not_lock_the_store_forever(store_dir: Path) -> None:
    holder = child("hold", store_dir)
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "ready"
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    finally:
        holder.kill()
        holder.wait(10)
        for stream in (holder.stdout, holder.stdin, holder.stderr):
            if stream:
                stream.close()
    engine = StorageEngine(str(store_dir), flush_interval_s=3600)
    engine.close()


@pytest.mark.requirement("MKV-DUR-006")
def test_same_process_second_open_is_refused_too(store_dir: Path) -> None:
    engine = StorageEngine(str(store_dir), capacity=CAPACITY, unit=UNIT, flush_interval_s=3600)
    try:
        with pytest.raises(StoreLocked) as info:
            StorageEngine(str(store_dir))
        assert f"pid {os.getpid()}" in info.value.message
        assert engine.stats()["blocks"] == 0  # the refused opener did not disturb the holder
    finally:
        engine.close()
    StorageEngine(str(store_dir)).close()
