"""A memkv client for engines: a slow or dead server becomes cache misses (MKV-INT-004).

Every call runs under a deadline (the transport's timeout); a failed call marks the server down
for `retry_interval_s`, during which lookups answer "absent", loads load nothing and stores are
dropped without a network round. Stores submitted in the background wait in a bounded backlog;
a full backlog drops the store. An engine therefore never blocks longer than one deadline on
memkv and never sees one of its exceptions.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..blocks import Limits
from ..buffers import BufferLike
from ..connect import connect
from ..errors import ErrorCode, InvalidArgument, MemkvError
from ..transport import PutItem, Transport
from .workers import BoundedWorkers

log = logging.getLogger("memkv.integrations")

_FAILURES = (MemkvError, OSError)
MAX_BATCH = Limits().max_batch  # items per request that every memkv target accepts
_REMOTE_SCHEMES = ("memkv+tcp", "memkv+nixl")


@dataclasses.dataclass(frozen=True)
class TierSettings:
    """Where the adapter's blocks live and how long the engine may wait for them."""

    url: str
    namespace: str = "default"
    key: str | None = None
    """Credential `<id>:<secret>` (or None for a server without authentication)."""
    key_file: str | None = None
    deadline_s: float = 2.0
    connect_timeout_s: float = 1.0
    retry_interval_s: float = 2.0
    max_pending_stores: int = 64

    def __post_init__(self) -> None:
        if not self.url:
            raise InvalidArgument("the adapter needs a memkv URL (url=memkv+tcp://host:port)")
        for name in ("deadline_s", "connect_timeout_s", "retry_interval_s"):
            if not getattr(self, name) > 0:
                raise InvalidArgument(f"{name} must be positive")
        if self.max_pending_stores < 1:
            raise InvalidArgument("max_pending_stores must be at least 1")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> TierSettings:
        """Settings from an engine's configuration mapping; unknown names are refused."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - set(fields))
        if unknown:
            raise InvalidArgument(f"unknown memkv adapter option(s) {unknown}; known: {sorted(fields)}")
        values: dict[str, Any] = {}
        for name, value in options.items():
            kind = fields[name].type
            try:
                if kind == "float":
                    values[name] = float(value)
                elif kind == "int":
                    values[name] = int(value)
                else:
                    values[name] = None if value is None else str(value)
            except (TypeError, ValueError):
                raise InvalidArgument(f"memkv adapter option {name}={value!r} is not a {kind}") from None
        return cls(**values)

    def connect_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if urllib.parse.urlsplit(self.url).scheme in _REMOTE_SCHEMES:
            options = {"timeout": self.deadline_s, "connect_timeout": self.connect_timeout_s}
        if self.key is not None:
            options["key"] = self.key
        if self.key_file is not None:
            options["key_file"] = self.key_file
        return options


@dataclasses.dataclass
class TierCounters:
    failures: int = 0
    dropped_stores: int = 0
    skipped_while_down: int = 0


class GuardedTier:
    """Lookups, loads and stores against one namespace that never raise and never wait long."""

    def __init__(self, settings: TierSettings, opener: Callable[[TierSettings], Transport] | None = None) -> None:
        self.settings = settings
        self.counters = TierCounters()
        self._opener = opener or _open
        self._lock = threading.Lock()
        self._transport: Transport | None = None
        self._down_until = 0.0
        self._workers = BoundedWorkers(settings.max_pending_stores, name="memkv-store")
        self._closed = False

    # ---- the calls an adapter makes -------------------------------------------------------------
    def exists(self, keys: Sequence[bytes]) -> list[bool]:
        found = self._in_batches("exists", len(keys), lambda t, part: t.exists(keys[part]))
        return list(found) if found is not None else [False] * len(keys)

    def prefix_length(self, keys: Sequence[bytes]) -> int:
        """How many leading keys are present (0 while the server is down)."""
        if not keys:
            return 0
        found = self.exists(keys)
        return found.index(False) if False in found else len(found)

    def load_into(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[int | None]:
        """Read each block into its buffer; its length, or None where it was not loaded."""
        results = self._in_batches("load", len(keys), lambda t, part: t.get_into(keys[part], buffers[part]))
        if results is None:
            return [None] * len(keys)
        return [r.length if r.ok else None for r in results]

    def read(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Blocks as fresh bytes (a stat round first: sizes unknown); None where absent or not read."""
        blocks = self._in_batches("read", len(keys), lambda t, part: t.get(keys[part]))
        return list(blocks) if blocks is not None else [None] * len(keys)

    def store(self, items: Sequence[PutItem]) -> list[bool]:
        """Store now (in the caller's thread, under the deadline); True per block that is stored."""
        results = self._in_batches("store", len(items), lambda t, part: t.put(items[part]))
        if results is None:
            return [False] * len(items)
        return [r.ok or r.status is ErrorCode.KEY_CONFLICT for r in results]

    def delete(self, keys: Sequence[bytes]) -> int:
        """Remove blocks; how many were removed (0 while the server is down)."""
        results = self._in_batches("delete", len(keys), lambda t, part: t.delete(keys[part]))
        return 0 if results is None else sum(1 for r in results if r.ok)

    def submit_store(self, items: Sequence[PutItem], done: Callable[[list[bool]], None] | None = None) -> bool:
        """Store in the background; False (dropped) when the backlog is full or the tier is closed.

        The payload buffers must stay valid until `done` is called.
        """
        def refused() -> None:
            self.counters.dropped_stores += 1

        def run() -> None:
            stored = self.store(items)
            if done is not None:
                done(stored)

        if self._closed:
            refused()
            return False
        return self._workers.submit(run, refused)

    def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until the background stores submitted so far have finished."""
        return self._workers.drain(timeout_s)

    def close(self) -> None:
        self._closed = True
        self._workers.close()
        with self._lock:
            transport, self._transport = self._transport, None
        if transport is not None:
            _quietly_close(transport)

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    # ---- failure handling -------------------------------------------------------------------------
    def _in_batches(self, what: str, count: int, call: Callable[[Transport, slice], Sequence[Any]]) -> list[Any] | None:
        """One call per MAX_BATCH items (a larger request is refused by the protocol, MKV-WIRE-041);
        None when any part failed: the whole call is then a miss, as without batches."""
        answers: list[Any] = []
        for start in range(0, count, MAX_BATCH):
            part = self._guarded(what, lambda t: call(t, slice(start, start + MAX_BATCH)))  # noqa: B023
            if part is None:
                return None
            answers.extend(part)
        return answers

    def _guarded(self, what: str, call: Callable[[Transport], Any]) -> Any:
        transport = self._current()
        if transport is None:
            return None
        try:
            return call(transport)
        except _FAILURES as exc:
            self._mark_down(transport, what, exc)
            return None

    def _current(self) -> Transport | None:
        with self._lock:
            if self._closed or time.monotonic() < self._down_until:
                self.counters.skipped_while_down += 1
                return None
            if self._transport is None:
                try:
                    self._transport = self._opener(self.settings)
                except _FAILURES as exc:
                    self._down_locked(f"connect to {self.settings.url}", exc)
                    return None
            return self._transport

    def _mark_down(self, transport: Transport, what: str, exc: BaseException) -> None:
        with self._lock:
            if self._transport is transport:
                self._transport = None
            self._down_locked(what, exc)
        _quietly_close(transport)

    def _down_locked(self, what: str, exc: BaseException) -> None:
        self.counters.failures += 1
        self._down_until = time.monotonic() + self.settings.retry_interval_s
        log.warning("memkv %s failed (%s); answering misses for %.1f s", what, exc, self.settings.retry_interval_s)


def _open(settings: TierSettings) -> Transport:
    return connect(settings.url, settings.namespace, **settings.connect_options())


def _quietly_close(transport: Transport) -> None:
    try:
        transport.close()
    except _FAILURES:
        pass
