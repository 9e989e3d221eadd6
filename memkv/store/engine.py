"""The storage engine: device + superblock + extent allocator + index + eviction + sessions.

This module holds the block operations and invalidation; the state and shared machinery are in
core.py, sessions in session_ops.py and streamed I/O in stream_ops.py.

Thread-safe. Metadata changes happen under one lock; payload I/O happens outside it.
Write path (two-phase, MKV-OPS-002): verify a declared checksum -> reserve extents (may evict) ->
write payload -> commit the index row. Read path: pin the row against reuse -> read -> verify checksum.

Extents are freed exactly once: by removal when no reader holds them, else by the last
reader. Eviction is planned on a copy of the allocator first, so a put that cannot fit
evicts nothing (MKV-CAP-003). `close` waits for payload I/O in flight before it closes the
device, so no thread ever writes through a closed (and possibly reused) descriptor.
"""

from __future__ import annotations

import concurrent.futures
import uuid
from collections.abc import Sequence

from ..buffers import BufferLike, readable_view, writable_view
from ..checksum import payload_checksum, payload_hasher
from ..errors import (
    InvalidArgument,
    NotFound,
    UnknownLease,
)
from ..keys import check_fingerprint, check_key
from ..namespaces import check_namespace
from ..sessions import PINNING_STATES
from ..transport import BlockInfo, GetResult, ItemResult, LookupResult, PutItem
from .allocator import Extent
from .core import (
    EXPIRED_SESSION_RETENTION_S,
    MAX_TTL_S,
    OVERLAP_MIN_BYTES,
    READ_PIECE,
    BlockRead,
    _check_declared,
    _Lease,
    _Live,
    _reput,
    check_ttl,
)
from .index import BlockRow
from .session_ops import SessionOps
from .stream_ops import StreamOps


class StorageEngine(SessionOps, StreamOps):
    """One store directory (index, lock, and the device file unless a device path is given)."""

    def put(self, namespace: str, items: Sequence[PutItem]) -> list[ItemResult]:
        self._check_open()
        check_namespace(namespace)
        self.limits.check_batch(len(items))
        return [self._per_item(lambda item=item: self._put_one(namespace, item),  # type: ignore[misc]
                               lambda exc: ItemResult(exc.code, exc.message)) for item in items]

    def _put_one(self, namespace: str, item: PutItem) -> ItemResult:
        key = check_key(item.key)
        payload = readable_view(item.payload)
        self.limits.check_payload_size(len(payload))
        item.meta.validate(self.limits)
        block_id = (namespace, key)
        # A declared checksum is verified before reserving: reserving may evict (MKV-ERR-002).
        known = None if item.checksum is None else payload_checksum(payload)
        if known is not None:
            _check_declared(known, item.checksum)
        reserved = self._reserve(block_id, len(payload))
        assert reserved is not None  # with eviction, _reserve reserves or raises
        if isinstance(reserved, _Live):
            return _reput(key, reserved.row, len(payload), payload_checksum(payload) if known is None else known,
                          item.checksum)
        row = None
        try:
            if known is None:
                checksum = self._write_and_checksum(reserved.extents, payload)
            else:
                self._write_extents(reserved.extents, payload)
                checksum = known
            row = BlockRow(namespace, key, len(payload), checksum, item.meta, reserved.extents, self.clock())
        finally:
            self._settle(block_id, reserved, row)
        return ItemResult()

    def _write_and_checksum(self, extents: Sequence[Extent], payload: memoryview) -> int:
        """Write the payload and hash it at the same time: the device write releases the GIL.

        The extents are not committed yet, so a checksum that then fails leaves nothing stored.
        """
        if len(payload) < OVERLAP_MIN_BYTES:
            self._write_extents(extents, payload)
            return payload_checksum(payload)
        writing = self._io_pool.submit(self._write_extents, extents, payload)
        try:
            checksum = payload_checksum(payload)
        finally:
            writing.result()
        return checksum

    def _write_extents(self, extents: Sequence[Extent], payload: memoryview) -> None:
        pos = 0
        for extent in extents:
            piece = payload[pos : pos + extent.length]
            self.device.write(extent.offset, piece)
            pos += len(piece)

    def _read_pieces(self, extents: Sequence[Extent], dest: memoryview) -> list[tuple[int, memoryview]]:
        """(device offset, destination slice) pairs of at most READ_PIECE bytes covering `dest`."""
        pieces, pos = [], 0
        for offset, size in self._piece_plan(extents, len(dest), READ_PIECE):
            pieces.append((offset, dest[pos : pos + size]))
            pos += size
        return pieces

    def _read_and_checksum(self, extents: Sequence[Extent], dest: memoryview) -> int:
        """Read a block and hash it; a large block's piece is hashed while the next is read."""
        hasher = payload_hasher()
        pieces = self._read_pieces(extents, dest)
        if len(dest) < OVERLAP_MIN_BYTES:
            for offset, piece in pieces:
                self.device.read_into(offset, piece)
            hasher.update(dest)
            return hasher.intdigest()
        in_flight: list[tuple[concurrent.futures.Future[None], memoryview]] = []
        try:
            for offset, piece in pieces:
                in_flight.append((self._io_pool.submit(self.device.read_into, offset, piece), piece))
                if len(in_flight) == 2:
                    reading, done_piece = in_flight.pop(0)
                    reading.result()
                    hasher.update(done_piece)
            for reading, done_piece in in_flight:
                reading.result()
                hasher.update(done_piece)
        finally:
            concurrent.futures.wait([reading for reading, _ in in_flight])
        return hasher.intdigest()

    def get_into(self, namespace: str, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        self._check_open()
        check_namespace(namespace)
        self.limits.check_batch(len(keys))
        if len(keys) != len(buffers):
            raise InvalidArgument(f"{len(keys)} keys but {len(buffers)} buffers")
        pairs = zip(keys, buffers, strict=True)
        return [self._per_item(lambda k=k, b=b: self._get_one(namespace, k, b),  # type: ignore[misc]
                               lambda exc: GetResult(exc.code, exc.message)) for k, b in pairs]

    def _get_one(self, namespace: str, key: bytes, buffer: BufferLike) -> GetResult:
        dest = writable_view(buffer)
        block = self.open_read(namespace, key, len(dest))
        try:
            row = block.live.row
            self._verified(block, self._read_and_checksum(row.extents, dest[: row.length]))
        finally:
            self.close_read(block)
        return block.result()

    def stat(self, namespace: str, keys: Sequence[bytes]) -> list[BlockInfo | None]:
        check_namespace(namespace)
        self.limits.check_batch(len(keys))
        checked = [check_key(k) for k in keys]
        with self._guard():
            lives = [self._blocks.get((namespace, k)) for k in checked]
            return [None if live is None else BlockInfo(k, live.row.length, live.row.checksum, live.row.meta)
                    for k, live in zip(checked, lives, strict=True)]

    def exists(self, namespace: str, keys: Sequence[bytes]) -> list[bool]:
        return [info is not None for info in self.stat(namespace, keys)]

    def lookup(self, namespace: str, keys: Sequence[bytes], lease_ms: int = 0) -> LookupResult:
        check_namespace(namespace)
        self.limits.check_batch(len(keys))
        checked = [check_key(k) for k in keys]
        if not isinstance(lease_ms, int) or not 0 <= lease_ms <= self.limits.max_lease_ms:
            raise InvalidArgument(f"lease_ms must be in 0..{self.limits.max_lease_ms}")
        with self._guard():
            prefix = 0
            for key in checked:
                if not self._present(namespace, key):
                    break
                prefix += 1
            if lease_ms == 0 or prefix == 0:
                return LookupResult(prefix)
            self._expire_leases(self.clock())
            self._check_count_quota(namespace, "leases",
                                    sum(1 for lease in self._leases.values() if lease.namespace == namespace))
            lease_id = uuid.uuid4().hex
            expires_at = self.clock() + lease_ms / 1000.0
            lease = _Lease(namespace, tuple(checked[:prefix]), expires_at)
            self._leases[lease_id] = lease
            for key in lease.keys:
                self._leased[(namespace, key)] += 1
            return LookupResult(prefix, lease_id, expires_at)

    def release_lease(self, namespace: str, lease_id: str) -> None:
        with self._guard():
            self._expire_leases(self.clock())
            lease = self._leases.get(lease_id)
            if lease is None or lease.namespace != namespace:
                raise UnknownLease(f"lease {lease_id!r} does not exist or has expired")
            self._drop_lease(lease_id)

    def delete(self, namespace: str, keys: Sequence[bytes]) -> list[ItemResult]:
        self._check_open()
        check_namespace(namespace)
        self.limits.check_batch(len(keys))

        def delete_one(key: bytes) -> ItemResult:
            block_id = (namespace, check_key(key))
            with self._guard():
                if not self._remove_many([block_id]):
                    raise NotFound(f"no block {key.hex()} in namespace {namespace}")
            return ItemResult()

        return [self._per_item(lambda k=k: delete_one(k), lambda exc: ItemResult(exc.code, exc.message))  # type: ignore[misc]
                for k in keys]

    def invalidate_keys(self, namespace: str, keys: Sequence[bytes]) -> int:
        check_namespace(namespace)
        self.limits.check_batch(len(keys))
        checked = [check_key(k) for k in keys]
        with self._guard():
            return self._remove_many((namespace, k) for k in checked)

    def invalidate_prefix(self, namespace: str, key: bytes) -> int:
        check_namespace(namespace)
        key = check_key(key)
        with self._guard():
            return self._remove_many((namespace, k) for k in self.index.descendants(namespace, key))

    def invalidate_session(self, namespace: str, session_id: str) -> int:
        with self._guard():
            row = self._load_session(namespace, session_id)
            return self._remove_many((namespace, k) for k in row.keys)

    def invalidate_model(self, namespace: str, fingerprint: bytes) -> int:
        check_namespace(namespace)
        fingerprint = check_fingerprint(fingerprint)
        with self._guard():
            keys = self.index.keys_where(namespace, "fingerprint", fingerprint)
            return self._remove_many((namespace, k) for k in keys)

    def invalidate_namespace(self, namespace: str) -> int:
        check_namespace(namespace)
        with self._guard():
            sessions = self.index.sessions(namespace)
            removed = self._remove_many([(namespace, k) for k in self.index.keys_where(namespace)],
                                        also=lambda: self.index.delete_namespace_sessions(namespace))
            # Committed: now memory follows (MKV-DUR-008).
            for row in sessions:
                if row.state in PINNING_STATES:
                    self._pin(row, -1)
            for lease_id in [i for i, lease in self._leases.items() if lease.namespace == namespace]:
                self._drop_lease(lease_id)
            return removed


__all__ = ["EXPIRED_SESSION_RETENTION_S", "MAX_TTL_S", "BlockRead", "StorageEngine", "check_ttl"]
