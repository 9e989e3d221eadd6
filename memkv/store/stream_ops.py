"""Streamed put and get: a server overlapping the network with the device, piece by piece.

Same two phases and the same verification as the whole-buffer path of engine.py.
"""

from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Callable, Sequence
from typing import Any

from ..blocks import BlockMeta
from ..checksum import payload_hasher
from ..errors import (
    Corrupted,
    ErrorCode,
    InvalidArgument,
    MemkvError,
    Unavailable,
)
from ..keys import check_key
from ..namespaces import check_namespace
from ..transport import ItemResult, PutItem
from .core import (
    OVERLAP_MIN_BYTES,
    STREAM_ALIGN,
    BlockRead,
    EngineCore,
    _check_declared,
    _Live,
    _reput,
)
from .index import BlockRow


class StreamOps(EngineCore):
    _put_one: Callable[[str, PutItem], ItemResult]  # the whole-buffer put of engine.py

    @staticmethod
    def _piece_size(buffers: Sequence[memoryview]) -> int:
        if len(buffers) < 2:
            raise InvalidArgument("a streamed put or get needs at least two piece buffers")
        piece = min(len(b) for b in buffers) // STREAM_ALIGN * STREAM_ALIGN
        if piece <= 0:
            raise InvalidArgument(f"piece buffers must hold at least {STREAM_ALIGN} bytes")
        return piece

    def _device_write(self, offset: int, data: memoryview) -> None:
        try:
            self.device.write(offset, data)
        except OSError as exc:
            raise Unavailable(f"device I/O failed: {exc}") from None

    def put_stream(self, namespace: str, key: bytes, length: int, fill: Callable[[memoryview], None],
                   buffers: Sequence[memoryview], meta: BlockMeta | None = None,
                   checksum: int | None = None, use_mapping: bool = True) -> ItemResult:
        """Store one block whose bytes arrive piece by piece: the two-phase put of `put`, streamed.

        Extents are reserved first; then, for each piece, `fill(view)` must fill `view`
        completely (e.g. recv_into from a socket) and the piece is written to the device while
        the next one is filled; pieces rotate through `buffers` (at least two page-aligned
        buffers; the smallest sets the piece size). On a buffered device `fill` gets views of
        the mapped device instead, so the bytes land in the page cache without a copy, unless
        `use_mapping` is false (a caller whose pieces must be its own memory, e.g. memory
        registered with NIXL). Nothing
        is visible before the whole payload matches `checksum` and the index row is committed;
        on any failure the extents are freed.

        Raises the item's MemkvError (CHECKSUM_MISMATCH, KEY_CONFLICT, CAPACITY_EXCEEDED, device
        failure as UNAVAILABLE, ...) instead of returning it, and lets an exception of `fill`
        through unchanged. When it raises, `fill` may have consumed only part of the payload:
        the caller discards the rest of its input.
        """
        self._check_open()
        check_namespace(namespace)
        key = check_key(key)
        meta = BlockMeta() if meta is None else meta
        self.limits.check_payload_size(length)
        meta.validate(self.limits)
        piece = self._piece_size(buffers)
        block_id = (namespace, key)
        reserved = self._reserve(block_id, length, evict=False)
        if reserved is None:
            return self._put_staged(namespace, key, length, fill, buffers[0][:piece], meta, checksum)
        if isinstance(reserved, _Live):
            return self._reput_stream(key, reserved.row, length, fill, buffers[0][:piece], checksum)
        row = None
        writes: collections.deque[concurrent.futures.Future[None]] = collections.deque()
        mapped = self.device.mapping() if use_mapping else None
        try:
            hasher = payload_hasher()
            for k, (offset, size) in enumerate(self._piece_plan(reserved.extents, length, piece)):
                if mapped is not None:  # buffered device: receive straight into the page cache
                    view = mapped[offset : offset + size]
                    fill(view)
                    hasher.update(view)
                    continue
                if len(writes) == len(buffers):
                    writes.popleft().result()  # the write that last used this buffer
                view = buffers[k % len(buffers)][:size]
                fill(view)
                if length < OVERLAP_MIN_BYTES:
                    self._device_write(offset, view)
                else:
                    writes.append(self._io_pool.submit(self._device_write, offset, view))
                hasher.update(view)
            while writes:
                writes.popleft().result()
            _check_declared(hasher.intdigest(), checksum)
            row = BlockRow(namespace, key, length, hasher.intdigest(), meta, reserved.extents, self.clock())
        except MemkvError as exc:
            with self._lock:
                self.counters.errors[exc.code.name] += 1
            raise
        finally:
            concurrent.futures.wait(writes)
            self._settle(block_id, reserved, row)
        return ItemResult()

    def _put_staged(self, namespace: str, key: bytes, length: int, fill: Callable[[memoryview], None],
                    scratch: memoryview, meta: BlockMeta, checksum: int | None) -> ItemResult:
        """A streamed put that fits only by evicting: receive it whole first (at most max_block_size,
        checked by the caller), so it is verified before anything is evicted (MKV-ERR-002).

        `fill` gets views of the caller's own piece buffer (NIXL needs its registered memory)."""
        staged = memoryview(bytearray(length))
        for start in range(0, length, len(scratch)):
            view = scratch[: min(len(scratch), length - start)]
            fill(view)
            staged[start : start + len(view)] = view
        result = self._put_one(namespace, PutItem(key, staged, meta, checksum))
        result.raise_for_status()
        return result

    @staticmethod
    def _reput_stream(key: bytes, row: BlockRow, length: int, fill: Callable[[memoryview], None],
                      scratch: memoryview, declared: int | None) -> ItemResult:
        hasher = payload_hasher()
        for start in range(0, length, len(scratch)):
            view = scratch[: min(len(scratch), length - start)]
            fill(view)
            hasher.update(view)
        return _reput(key, row, length, hasher.intdigest(), declared)

    def read_stream(self, block: BlockRead, buffers: Sequence[memoryview], emit: Callable[[memoryview], None],
                    use_mapping: bool = True) -> None:
        """Read a pinned block piece by piece and hand each piece to `emit` while the next ones are read.

        Pieces rotate through `buffers` (at least two; len(buffers) - 1 reads run ahead of
        `emit`). A piece's view is valid only during its `emit` call. On a buffered device the
        pieces are views of the mapped device instead (no copy, no reads ahead) unless
        `use_mapping` is false. The bytes are
        hashed as they pass; when the whole block fails its checksum the block is removed and Corrupted
        is raised after every piece was emitted (a streaming receiver detects it by the
        checksum it was given). A device failure raises Unavailable part-way.
        """
        if block.closed:
            raise InvalidArgument("this block read is closed")
        row = block.live.row
        piece = self._piece_size(buffers)
        plan = self._piece_plan(row.extents, row.length, piece)
        hasher = payload_hasher()
        queue: collections.deque[tuple[concurrent.futures.Future[None], memoryview]] = collections.deque()
        mapped = self.device.mapping() if use_mapping else None
        if mapped is not None:
            # Buffered device: emit straight from the page cache while another thread hashes the
            # same pages (both release the GIL); the pinned block keeps the pages in place.
            plan, pieces = [], [mapped[offset : offset + size] for offset, size in plan]
            hashing = self._io_pool.submit(_hash_pieces, hasher, pieces)
            try:
                for view in pieces:
                    emit(view)
            finally:
                hashing.result()

        def submit(k: int) -> None:
            offset, size = plan[k]
            view = buffers[k % len(buffers)][:size]
            queue.append((self._io_pool.submit(self.device.read_into, offset, view), view))

        try:
            ahead = 0
            while ahead < min(len(buffers) - 1, len(plan)):
                submit(ahead)
                ahead += 1
            while queue:
                reading, view = queue.popleft()
                try:
                    reading.result()
                except OSError as exc:
                    raise Unavailable(f"device I/O failed: {exc}") from None
                if ahead < len(plan):
                    submit(ahead)  # into the buffer of the piece emitted last
                    ahead += 1
                hasher.update(view)
                emit(view)
        finally:
            concurrent.futures.wait([reading for reading, _ in queue])
        try:
            self._verified(block, hasher.intdigest())
        except Corrupted:
            with self._lock:
                self.counters.errors[ErrorCode.CORRUPTED.name] += 1
            raise


def _hash_pieces(hasher: Any, pieces: Sequence[memoryview]) -> None:
    for view in pieces:
        hasher.update(view)
