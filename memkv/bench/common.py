"""What every benchmark path shares: the run's configuration, page-aligned buffers, key slots, one
memkv operation, and the Target interface a backend's measured pair (memkv path, raw path) implements."""

from __future__ import annotations

import abc
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..blocks import MiB
from ..buffers import BufferLike, aligned_buffer
from ..errors import InvalidArgument, Unsupported
from ..transport import ItemResult, PutItem, Transport
from ..units import parse_size

DEFAULT_SIZES = (2 * MiB, 4 * MiB, 8 * MiB, 16 * MiB)
DEFAULT_COUNT = 32
DEFAULT_ROUNDS = 5
TARGET_SIZE = 16 * MiB
TARGET_RATIO = 0.85
OPS = ("put", "get")
PATHS = ("memkv", "raw")


def parse_sizes(text: str) -> list[int]:
    """"2,4,8,16MiB" or "64KiB,2MiB": a bare number takes the unit of the last item."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise InvalidArgument("--sizes needs at least one size")
    unit = parts[-1].lstrip("0123456789.")
    sizes = [parse_size(p + unit if p.replace(".", "").isdigit() else p) for p in parts]
    for size in sizes:
        if size <= 0 or size % 4096:
            raise InvalidArgument(f"block size {size} must be a positive multiple of 4 KiB")
    return sizes


@dataclasses.dataclass(frozen=True, slots=True)
class BenchConfig:
    backend: str = "file"
    sizes: tuple[int, ...] = DEFAULT_SIZES
    count: int = DEFAULT_COUNT
    rounds: int = DEFAULT_ROUNDS
    directory: str | None = None
    keep: bool = False
    io: tuple[str, ...] = ("auto",)
    compare: tuple[str, ...] = ()  # peers and limits measured in the same run (memkv.bench.peers)
    stored: int = 0  # bytes of other blocks kept in the store for the whole run (--stored)
    batch: int = 1  # blocks per call: memkv puts or gets them in one request, raw moves them in one transfer


def bench_buffers(size: int, count: int, distinct: int = 4) -> tuple[list[memoryview], list[memoryview]]:
    """Up to `distinct` (at least four) page-aligned sources of random bytes, and as many
    destinations, of `size`, all with their pages mapped in."""
    rng = np.random.default_rng(size)
    sources = []
    for _ in range(min(count, max(4, distinct))):
        buf = aligned_buffer(size)
        np.frombuffer(buf, dtype=np.uint8)[:] = rng.integers(0, 256, size, dtype=np.uint8)
        sources.append(buf)
    dests = []
    for _ in range(len(sources)):
        buf = aligned_buffer(size)
        # touched once here, so that whichever path gets into them first does not pay their page
        # faults (rounds alternate the order; an odd number of rounds would charge one path more)
        np.frombuffer(buf, dtype=np.uint8)[:] = 1
        dests.append(buf)
    return sources, dests


class BlockSlots:
    """One round's keys, and source/destination buffers reused cyclically by block index."""

    def __init__(self) -> None:
        self._buffers: dict[int, tuple[list[memoryview], list[memoryview]]] = {}
        self.keys: list[bytes] = []
        self.size = 0

    def begin(self, size: int, count: int) -> None:
        if size not in self._buffers:
            self._buffers = {size: bench_buffers(size, count)}  # keep only the current size's buffers
        self.size = size
        self.keys = [os.urandom(16) for _ in range(count)]

    def src(self, i: int) -> memoryview:
        sources = self._buffers[self.size][0]
        return sources[i % len(sources)]

    def dst(self, i: int) -> memoryview:
        dests = self._buffers[self.size][1]
        return dests[i % len(dests)]


_MADE: set[str] = set()  # --dir folders that runs of this process made (remove_run_directory)


def run_directory(prefix: str, directory: str | None) -> str:
    """A new directory for one run's files: inside `directory` (made when missing), or in the
    system's temporary directory when it is None."""
    if directory is not None and not os.path.isdir(directory):
        os.makedirs(directory, exist_ok=True)
        _MADE.add(os.path.abspath(directory))
    return tempfile.mkdtemp(prefix=prefix, dir=directory)


def remove_run_directory(root: str) -> None:
    """Remove a run directory, and the --dir folder holding it when run_directory made that folder
    and nothing else is in it now: a run leaves the filesystem as it found it."""
    shutil.rmtree(root, ignore_errors=True)
    folder = os.path.dirname(os.path.abspath(root))
    if folder in _MADE:
        try:
            os.rmdir(folder)
        except OSError:  # another run's directory, or someone's files, are in it
            return
        _MADE.discard(folder)


def memkv_op(transport: Transport, op: str, key: bytes, src: BufferLike, dst: BufferLike) -> None:
    """One timed memkv operation: put `src` under `key`, or get `key` into `dst`."""
    memkv_ops(transport, op, [key], [src], [dst])


def memkv_ops(transport: Transport, op: str, keys: Sequence[bytes], srcs: Sequence[BufferLike],
              dsts: Sequence[BufferLike]) -> None:
    """One timed call of several blocks: put each `srcs[j]` under `keys[j]` in one request, or get
    each key into its `dsts[j]`; any item's failure fails the run."""
    if op == "put":
        results: Sequence[ItemResult] = transport.put([PutItem(k, s) for k, s in zip(keys, srcs, strict=True)])
    else:
        results = transport.get_into(keys, dsts)
    for result in results:
        result.raise_for_status()


def fill_store(transport: Transport, stored: int, block: int) -> int:
    """Put blocks of `block` bytes under fresh keys until `stored` bytes are held; the count put."""
    source = bench_buffers(block, 1)[0][0]
    count = -(-stored // block)
    for _ in range(count):
        transport.put([PutItem(os.urandom(16), source)])[0].raise_for_status()
    return count


class Target(abc.ABC):
    """One backend's memkv path(s) and its raw counterpart. Ops work on block slot `i` of a round.

    `paths` names what `op` can run: one or more memkv paths, then "raw" last.
    """

    description: dict[str, Any]
    paths: tuple[str, ...] = PATHS

    @abc.abstractmethod
    def begin(self, size: int, count: int, round_no: int) -> None: ...

    @abc.abstractmethod
    def op(self, path: str, op: str, i: int) -> None: ...

    def ops(self, path: str, op: str, first: int, n: int) -> None:
        """One timed call that moves blocks first..first+n-1 (`--batch n`); targets without a batched
        raw path take one block per call."""
        if n != 1:
            raise Unsupported(f"--batch is not supported by this backend ({type(self).__name__})")
        self.op(path, op, first)

    @abc.abstractmethod
    def end(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def preload(self, stored: int, block: int) -> int:
        """Keep `stored` bytes of other blocks in every memkv store of the target; the blocks put."""
        raise Unsupported(f"--stored is not supported by this backend ({type(self).__name__})")

    def server_memory(self) -> dict[str, Any] | None:
        """Memory of the server process the memkv path talks to, when there is one."""
        return None

    def cpu_processes(self, path: str) -> dict[str, int]:
        """The processes whose CPU time `path` costs, by role (memkv.bench.cpu): this process (the
        client), and the far end's process when the path has one."""
        return {"client": os.getpid()}
