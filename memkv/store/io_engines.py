"""Positional device I/O engines: io_uring (C extension) and a thread pool (pure Python).

The storage engine's device moves whole buffers at aligned offsets. An IOEngine does exactly
that: `pwrite(fd, offset, data)` writes all of `data`, `pread_into(fd, offset, dest)` fills
`dest` (a shorter count only at end of file). Inside, a buffer is cut into `chunk_size`
pieces kept `depth` in flight, so one large block reaches the device as a queue of requests.

- `UringEngine` wraps `memkv.store._uring` (native/uring.c): one io_uring per calling thread,
  optional registered (pre-pinned) buffers, batched submit and reap without the GIL.
- `ThreadEngine` uses `os.preadv` / `os.pwritev` in a thread pool (the GIL is released during
  each system call). It works everywhere and is the fallback.

`select_engine()` picks one: `MEMKV_IO=uring` or `MEMKV_IO=threads` forces it, `auto` (the
default) takes io_uring when the extension is built and the kernel allows it, threads
otherwise. `MEMKV_IO_DEPTH` and `MEMKV_IO_CHUNK_KIB` tune the queue.

An io_uring call never waits forever on a device that stopped answering: after
`MEMKV_IO_STALL_S` seconds (default 120, 0 for never) in which none of its requests completed it
raises TimeoutError (ETIMEDOUT), and a signal handler's exception (Ctrl-C, a test's timeout)
ends a wait too. The ring is then abandoned (native/uring.c says how its memory is kept safe) and
the thread's next call opens a new one. The thread pool's system calls cannot be bounded this way.

Errors are `OSError` with the kernel's errno; the device layer maps them to spec error codes.
"""

from __future__ import annotations

import abc
import concurrent.futures
import dataclasses
import errno
import mmap
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any, TypeVar, cast

from typing_extensions import Buffer

from ..errors import InvalidArgument, Unsupported

DEFAULT_DEPTH = 8
DEFAULT_CHUNK = 1024 * 1024
# A device whose requests have not completed for this long is treated as failed (seconds; 0 is never).
# Linux gives an NVMe command 30 s before it retries or resets the controller, so this leaves time
# for a retry; MEMKV_IO_STALL_S overrides it.
DEFAULT_STALL_S = 120
MAX_STALL_S = 86400
ENGINE_NAMES = ("uring", "threads")

T = TypeVar("T")


def _load_uring() -> ModuleType | None:
    try:
        from . import _uring  # the optional C extension (setup.py)
    except ImportError:
        return None
    return _uring


def uring_status() -> tuple[bool, str]:
    """Whether io_uring can be used here, and why not when it cannot."""
    mod = _load_uring()
    if mod is None:
        return False, "the memkv.store._uring extension is not built (no compiler at install, or not Linux)"
    ok, err = mod.probe()
    if ok:
        return True, "io_uring_setup works"
    reason = os.strerror(err) if err else "unknown error"
    if err == errno.EPERM:
        reason += " (kernel.io_uring_disabled, or a seccomp profile blocks io_uring)"
    elif err == errno.ENOSYS:
        reason += " (kernel without io_uring, or a seccomp profile blocks it)"
    return False, f"io_uring_setup failed: {reason}"


def _flat(buffer: Buffer, writable: bool) -> memoryview:
    view = memoryview(buffer)
    if not view.contiguous:
        raise InvalidArgument("I/O buffer must be contiguous")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    if writable and view.readonly:
        raise InvalidArgument("destination buffer is read-only")
    return view


class IOEngine(abc.ABC):
    """Moves whole buffers to and from a file descriptor at given offsets."""

    name: str = "abstract"

    def __init__(self, depth: int = DEFAULT_DEPTH, chunk_size: int = DEFAULT_CHUNK) -> None:
        if depth < 1 or depth > 4096:
            raise InvalidArgument("I/O depth must be 1..4096")
        if chunk_size < 4096 or chunk_size % 4096:
            raise InvalidArgument("I/O chunk size must be a positive multiple of 4096")
        self.depth = depth
        self.chunk_size = chunk_size

    def pwrite(self, fd: int, offset: int, data: Buffer) -> int:
        """Write all of `data` at `offset`; returns len(data) or raises OSError."""
        return self.pwrite_batch(fd, [offset], [data])[0]

    def pread_into(self, fd: int, offset: int, dest: Buffer) -> int:
        """Fill `dest` from `offset`; returns the bytes read (fewer only at end of file)."""
        return self.pread_batch(fd, [offset], [dest])[0]

    @abc.abstractmethod
    def pwrite_batch(self, fd: int, offsets: Sequence[int], buffers: Sequence[Buffer]) -> list[int]:
        """Write each buffer at its offset, all queued together."""

    # Whether pwrite_during runs `during` while the writes are in flight, in the calling thread.
    overlaps_writes = False

    def pwrite_during(self, fd: int, offsets: Sequence[int], buffers: Sequence[Buffer], during: Callable[[], T]) -> T:
        """pwrite_batch, all of every buffer, and the result of `during()`, which runs while the
        writes are in flight where the engine can (`overlaps_writes`), after them otherwise."""
        self.pwrite_batch(fd, offsets, buffers)
        return during()

    @abc.abstractmethod
    def pread_batch(self, fd: int, offsets: Sequence[int], buffers: Sequence[Buffer]) -> list[int]:
        """Fill each buffer from its offset, all queued together."""

    def register_buffers(self, buffers: Sequence[Buffer]) -> bool:
        """Pre-register long-lived I/O buffers; True when the engine uses them (io_uring)."""
        return False

    def unregister_buffers(self) -> None:  # noqa: B027 - optional hook
        """Drop registered buffers."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release rings and threads."""

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "depth": self.depth, "chunk_size": self.chunk_size}

    def __enter__(self) -> IOEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_written(counts: Sequence[int], buffers: Sequence[Buffer]) -> None:
    for count, buf in zip(counts, buffers, strict=True):
        if count != memoryview(buf).nbytes:
            raise OSError(errno.EIO, "short write")


class UringEngine(IOEngine):
    """io_uring through the memkv.store._uring extension; one ring per calling thread."""

    name = "uring"

    def __init__(self, depth: int = DEFAULT_DEPTH, chunk_size: int = DEFAULT_CHUNK,
                 stall_timeout_s: float = DEFAULT_STALL_S) -> None:
        super().__init__(depth, chunk_size)
        if not 0 <= stall_timeout_s <= MAX_STALL_S:
            raise InvalidArgument(f"the I/O stall timeout must be 0 (never) to {MAX_STALL_S} s, got {stall_timeout_s}")
        self.stall_timeout_s = stall_timeout_s
        ok, reason = uring_status()
        if not ok:
            raise Unsupported(f"io_uring engine unavailable: {reason}")
        mod = _load_uring()
        assert mod is not None
        self._mod = mod
        # An extension built before Ring.write_during (a stale in-place build) still writes; it
        # only cannot overlap, so a large put takes the pool path instead of failing.
        self.overlaps_writes = hasattr(mod.Ring, "write_during")
        # ... and one built before stall_timeout waits as it always did.
        self._ring_options = {"stall_timeout": float(stall_timeout_s)} if hasattr(mod.Ring, "stall_timeout") else {}
        self._local = threading.local()
        self._lock = threading.Lock()
        # rings of threads that have exited are closed when their thread-local goes away
        self._rings: weakref.WeakSet[Any] = weakref.WeakSet()
        self._registered: list[Buffer] = []
        self._closed = False
        first = self._ring()  # fail here, not on first I/O, when the ring cannot be created
        # Without IORING_FEAT_EXT_ARG (Linux < 5.11) the kernel cannot bound a wait: no stall timeout.
        self.bounded_waits = bool(getattr(first, "bounded_waits", False))

    def _ring(self) -> Any:
        ring = getattr(self._local, "ring", None)
        if ring is None or ring.closed:
            if self._closed:
                raise ValueError("I/O on a closed engine")
            ring = self._mod.Ring(self.depth, self.chunk_size, **self._ring_options)
            with self._lock:
                if self._registered:
                    self._try_register(ring, self._registered)
                self._rings.add(ring)
            self._local.ring = ring
        return ring

    @staticmethod
    def _try_register(ring: Any, buffers: Sequence[Buffer]) -> bool:
        try:
            ring.register_buffers(buffers)
        except (OSError, ValueError, BufferError):
            return False  # RLIMIT_MEMLOCK, too many, read-only: plain READ/WRITE still work
        return True

    def pwrite_batch(self, fd: int, offsets: Sequence[int], buffers: Sequence[Buffer]) -> list[int]:
        counts: list[int] = self._ring().write(fd, offsets, buffers)
        _check_written(counts, buffers)
        return counts

    overlaps_writes = True

    def pwrite_during(self, fd: int, offsets: Sequence[int], buffers: Sequence[Buffer], during: Callable[[], T]) -> T:
        # The ring submits the writes, calls during() (with the GIL) while the device works, then
        # reaps: the overlap of a thread pool without its hand-offs.
        if not self.overlaps_writes:
            return super().pwrite_during(fd, offsets, buffers, during)
        counts, result = self._ring().write_during(fd, offsets, buffers, during)
        _check_written(counts, buffers)
        return cast(T, result)

    def pread_batch(self, fd: int, offsets: Sequence[int], buffers: Sequence[Buffer]) -> list[int]:
        counts: list[int] = self._ring().read(fd, offsets, buffers)
        return counts

    def register_buffers(self, buffers: Sequence[Buffer]) -> bool:
        buffers = list(buffers)
        with self._lock:
            self._registered = buffers
            results = [self._try_register(ring, buffers) for ring in list(self._rings) if not ring.closed]
        return all(results)

    def unregister_buffers(self) -> None:
        with self._lock:
            self._registered = []
            for ring in list(self._rings):
                if not ring.closed:
                    ring.unregister_buffers()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for ring in list(self._rings):
                ring.close()
            self._rings.clear()
            self._registered = []

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["registered_buffers"] = len(self._registered)
        info["stall_timeout_s"] = self.stall_timeout_s if self.bounded_waits else None
        return info


class ThreadEngine(IOEngine):
    """os.preadv / os.pwritev on a thread pool of `depth` workers; the portable fallback."""

    name = "threads"

    def __init__(self, depth: int = DEFAULT_DEPTH, chunk_size: int = DEFAULT_CHUNK) -> None:
        super().__init__(depth, chunk_size)
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.depth, thread_name_prefix="memkv-io")
            return self._pool

    @staticmethod
    def _write_piece(fd: int, offset: int, view: memoryview) -> int:
        done = 0
        while done < len(view):
            try:
                n = os.pwritev(fd, [view[done:]], offset + done)
            except InterruptedError:
                continue
            except BlockingIOError:
                continue
            if n <= 0:
                raise OSError(errno.EIO, "write accepted no bytes")
            done += n
        return done

    @staticmethod
    def _read_piece(fd: int, offset: int, view: memoryview) -> int:
        done = 0
        while done < len(view):
            try:
                n = os.preadv(fd, [view[done:]], offset + done)
            except InterruptedError:
                continue
            except BlockingIOError:
                continue
            if n == 0:
                break  # end of file
            done += n
        return done

    def _run(
        self,
        fn: Callable[[int, int, memoryview], int],
        fd: int,
        offsets: Sequence[int],
        views: Sequence[memoryview],
    ) -> list[int]:
        if len(offsets) != len(views):
            raise InvalidArgument("offsets and buffers differ in length")
        pieces: list[tuple[int, int, int, memoryview]] = []  # (op, start within op, offset, view)
        for i, (offset, view) in enumerate(zip(offsets, views, strict=True)):
            if offset < 0:
                raise InvalidArgument("negative offset")
            for start in range(0, len(view), self.chunk_size):
                pieces.append((i, start, offset + start, view[start : start + self.chunk_size]))
        counts = [0] * len(views)
        eof = [len(v) for v in views]
        if len(pieces) <= 1 or self.depth == 1:
            results = [fn(fd, off, piece) for _, _, off, piece in pieces]
        else:
            pool = self._executor()
            futures = [pool.submit(fn, fd, off, piece) for _, _, off, piece in pieces]
            # Every piece settles before anything is raised: a caller that frees or reuses the
            # buffer or the extents after an error must not race a piece still in flight.
            concurrent.futures.wait(futures)
            results = [f.result() for f in futures]
        for (i, start, _, piece), got in zip(pieces, results, strict=True):
            counts[i] += got
            if got < len(piece):
                eof[i] = min(eof[i], start + got)
        return [min(c, e) for c, e in zip(counts, eof, strict=True)]

    def pwrite_batch(self, fd: int, offsets: Sequence[int], buffers: Sequence[Buffer]) -> list[int]:
        return self._run(self._write_piece, fd, offsets, [_flat(b, False) for b in buffers])

    def pread_batch(self, fd: int, offsets: Sequence[int], buffers: Sequence[Buffer]) -> list[int]:
        return self._run(self._read_piece, fd, offsets, [_flat(b, True) for b in buffers])

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be an integer, got {raw!r}") from None


def select_engine(preference: str | None = None, depth: int | None = None, chunk_size: int | None = None,
                  stall_timeout_s: int | None = None) -> IOEngine:
    """The I/O engine to use: `preference` or MEMKV_IO (uring | threads | auto, default auto).

    auto takes io_uring when available and threads otherwise; a forced `uring` that cannot run
    raises Unsupported with the reason instead of silently measuring something else.
    """
    choice = (preference or os.environ.get("MEMKV_IO") or "auto").strip().lower()
    if depth is None:
        depth = _env_int("MEMKV_IO_DEPTH", DEFAULT_DEPTH)
    if chunk_size is None:
        chunk_size = _env_int("MEMKV_IO_CHUNK_KIB", DEFAULT_CHUNK // 1024) * 1024
    if stall_timeout_s is None:
        stall_timeout_s = _env_int("MEMKV_IO_STALL_S", DEFAULT_STALL_S)
    if choice == "threads":
        return ThreadEngine(depth, chunk_size)
    if choice == "uring":
        return UringEngine(depth, chunk_size, stall_timeout_s)
    if choice != "auto":
        raise InvalidArgument(f"MEMKV_IO must be uring, threads or auto, got {choice!r}")
    if uring_status()[0]:
        try:
            return UringEngine(depth, chunk_size, stall_timeout_s)
        except (Unsupported, OSError):
            pass
    return ThreadEngine(depth, chunk_size)


# ---- side-by-side benchmark ----------------------------------------------------------------


@dataclasses.dataclass
class BenchRow:
    """Throughput in MB/s (10**6 bytes per second) for one block size."""

    block_size: int
    count: int
    direct: bool
    write: dict[str, float]
    read: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _open_for_bench(path: str, size: int) -> tuple[int, bool]:
    from .device import open_direct, preallocate  # the store's own open mode

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        preallocate(fd, size)
    finally:
        os.close(fd)
    return open_direct(path, os.O_RDWR)


def _raw_qd1(write: bool, fd: int, offsets: list[int], buf: mmap.mmap) -> None:
    for off in offsets:
        (ThreadEngine._write_piece if write else ThreadEngine._read_piece)(fd, off, memoryview(buf))


def _raw_qd(depth: int) -> Callable[[bool, int, list[int], mmap.mmap], None]:
    def run(write: bool, fd: int, offsets: list[int], buf: mmap.mmap) -> None:
        # `depth` threads, each moving whole blocks with one pwritev/preadv (fio-like numjobs)
        view = memoryview(buf)
        fn = ThreadEngine._write_piece if write else ThreadEngine._read_piece
        with ThreadPoolExecutor(max_workers=depth) as pool:
            for f in [pool.submit(fn, fd, off, view) for off in offsets]:
                f.result()

    return run


def compare_engines(
    path: str,
    sizes: Sequence[int] = (2 << 20, 4 << 20, 8 << 20, 16 << 20),
    count: int = 16,
    depth: int = DEFAULT_DEPTH,
    chunk_size: int = DEFAULT_CHUNK,
    repeat: int = 3,
) -> list[BenchRow]:
    """Write then read `count` blocks of each size at sequential offsets in `path` through each
    engine and through raw os.pwritev/os.preadv (one whole block per call, queue depth 1 and
    queue depth `depth`); O_DIRECT when the filesystem allows it. Best of `repeat` runs each,
    taken in rotation so that drift hits every path alike. The file is removed at the end."""
    methods: dict[str, Callable[[bool, int, list[int], mmap.mmap], None]] = {}
    engines: list[IOEngine] = []
    if uring_status()[0]:
        uring = UringEngine(depth, chunk_size)
        uring_fixed = UringEngine(depth, chunk_size)
        engines += [uring, uring_fixed]
        methods["uring"] = _engine_method(uring)
        methods["uring_fixed"] = _engine_method(uring_fixed)
    else:
        uring_fixed = None
    threads = ThreadEngine(depth, chunk_size)
    engines.append(threads)
    methods["threads"] = _engine_method(threads)
    methods["raw_qd1"] = _raw_qd1
    methods[f"raw_qd{depth}"] = _raw_qd(depth)
    rows: list[BenchRow] = []
    try:
        for size in sizes:
            fd, direct = _open_for_bench(path, size * count)
            buf = mmap.mmap(-1, size)
            buf[:] = os.urandom(4096) * (size // 4096) if size % 4096 == 0 else os.urandom(size)
            if uring_fixed is not None:
                uring_fixed.register_buffers([buf])
            offsets = [i * size for i in range(count)]
            try:
                _raw_qd1(True, fd, offsets, buf)  # first touch: allocate extents before timing
                best_w = dict.fromkeys(methods, 0.0)
                best_r = dict.fromkeys(methods, 0.0)
                for _ in range(repeat):
                    for name, fn in methods.items():
                        for write, best in ((True, best_w), (False, best_r)):
                            start = time.perf_counter()
                            fn(write, fd, offsets, buf)
                            elapsed = time.perf_counter() - start
                            best[name] = max(best[name], size * count / elapsed / 1e6)
            finally:
                if uring_fixed is not None:
                    uring_fixed.unregister_buffers()
                os.close(fd)
                buf.close()
            rows.append(BenchRow(size, count, direct, best_w, best_r))
    finally:
        for engine in engines:
            engine.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return rows


def _engine_method(engine: IOEngine) -> Callable[[bool, int, list[int], mmap.mmap], None]:
    def run(write: bool, fd: int, offsets: list[int], buf: mmap.mmap) -> None:
        for off in offsets:
            if write:
                engine.pwrite(fd, off, buf)
            elif engine.pread_into(fd, off, buf) != len(buf):
                raise OSError(errno.EIO, "short read in benchmark")

    return run


def format_rows(rows: Sequence[BenchRow]) -> str:
    """A plain-text table of compare_engines() rows, with ratios to the fastest raw path."""
    if not rows:
        return ""
    names = list(rows[0].write)
    raw_names = [n for n in names if n.startswith("raw_")]
    header = f"{'block':>7} {'op':<5} " + " ".join(f"{n:>11}" for n in names) + "   uring/raw_best"
    lines = [header]
    for row in rows:
        for op, results in (("write", row.write), ("read", row.read)):
            raw_best = max(results[n] for n in raw_names)
            best_uring = max((results[n] for n in names if n.startswith("uring")), default=0.0)
            ratio = f"{best_uring / raw_best:14.2f}" if best_uring and raw_best else f"{'-':>14}"
            cells = " ".join(f"{results[n]:11.0f}" for n in names)
            lines.append(f"{row.block_size >> 20:>5}Mi {op:<5} {cells}   {ratio}")
    direct = "O_DIRECT" if all(r.direct for r in rows) else "buffered (no O_DIRECT)"
    lines.append(f"MB/s, best of runs, {rows[0].count} blocks per size, {direct}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """python -m memkv.store.io_engines [PATH] [COUNT]: run compare_engines and print the table."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    path = args[0] if args else os.path.join(os.environ.get("TMPDIR", "/tmp"), f"memkv-io-bench-{os.getpid()}")
    count = int(args[1]) if len(args) > 1 else 16
    print(format_rows(compare_engines(path, count=count)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
