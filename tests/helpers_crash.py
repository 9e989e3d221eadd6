"""Child processes for the crash and lock tests: run as `python tests/helpers_crash.py MODE DIR`.

writer: puts blocks start, start + 1, ... (each then deletes block i - KEEP); prints "w i"
        just before block i's put and "i" after both returned, until it is killed. The parent
        knows block i's exact bytes from `block(i)`.
hold:   opens the store, prints "ready", and keeps it until stdin closes.
try:    opens the store and prints the error code and message it got (or "opened").
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

from memkv.buffers import aligned_buffer
from memkv.errors import MemkvError
from memkv.store.engine import StorageEngine
from memkv.transport import PutItem

KiB = 1024
MiB = 1024 * KiB
CAPACITY = 48 * MiB
UNIT = 64 * KiB
KEEP = 6
NS = "crash"


def block_key(i: int) -> bytes:
    return i.to_bytes(16, "big")


def block_size(i: int) -> int:
    size = 1 * MiB + random.Random(i).randrange(2 * MiB)
    return size - size % 4096 if i % 2 else size  # odd blocks: whole pages, written from aligned memory


def put_source(data: bytes) -> bytes | memoryview:
    """Whole pages go in page-aligned memory, so that an O_DIRECT store hashes them while io_uring
    writes them (Device.write_during); other blocks take the bounce path and a pool thread hashes."""
    if len(data) % 4096:
        return data
    buf = aligned_buffer(len(data))
    buf[:] = data
    return buf


def block(i: int) -> bytes:
    return random.Random(-1 - i).randbytes(block_size(i))


def child(mode: str, directory: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start this file as a child process in `mode` on the store at `directory`."""
    return subprocess.Popen([sys.executable, __file__, mode, str(directory), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def open_store(directory: str) -> StorageEngine:
    return StorageEngine(directory, capacity=CAPACITY, unit=UNIT, flush_interval_s=0.02)


def writer(directory: str, start: int) -> None:
    engine = open_store(directory)
    out = sys.stdout
    for i in range(start, start + 100_000):
        data = block(i)
        out.write(f"w {i}\n")  # about to write block i: the parent kills around here
        out.flush()
        (result,) = engine.put(NS, [PutItem(block_key(i), put_source(data))])
        result.raise_for_status()
        if i - KEEP >= 0:
            engine.delete(NS, [block_key(i - KEEP)])  # NOT_FOUND on a fresh round is fine
        out.write(f"{i}\n")
        out.flush()


def hold(directory: str) -> None:
    engine = open_store(directory)
    print("ready", flush=True)
    sys.stdin.read()
    engine.close()


def try_open(directory: str) -> None:
    try:
        engine = open_store(directory)
    except MemkvError as exc:
        print(f"{exc.code.name} {exc.message}", flush=True)
        return
    print("opened", flush=True)
    engine.close()


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "writer":
        writer(path, int(sys.argv[3]))
    elif mode == "hold":
        hold(path)
    elif mode == "try":
        try_open(path)
    else:
        raise SystemExit(f"unknown mode {mode}")
    os._exit(0)
