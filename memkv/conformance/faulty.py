"""Deliberately faulty targets: small wrappers around the correct file backend.

The suite's own tests run the conformance suite against each and assert that the RIGHT
requirement fails. The catalogue of defects is in memkv/conformance/defects.py; each is reached as the
target `memkv.conformance.faulty:defect?name=NAME`. A faulty target's `spec` names its data directory
(`&url=file://...`), so the child processes of the durability and concurrency checks reopen the
same data through the same defect, as a third-party target's `spec` must.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from memkv.buffers import BufferLike
from memkv.sessions import SessionInfo
from memkv.transport import (
    BlockInfo,
    Capabilities,
    GetResult,
    ItemResult,
    LookupResult,
    PutItem,
    ResumeResult,
    Transport,
)

from .target import FileTarget, Target


class Wrapper(Transport):
    """Forwards everything to a correct transport; subclasses override one behaviour."""

    def __init__(self, inner: Transport, target: FaultyTarget | None = None) -> None:
        self.inner = inner
        self.namespace = inner.namespace
        self.target = target

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        return self.inner.put(items)

    def get_into(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        return self.inner.get_into(keys, buffers)

    def stat(self, keys: Sequence[bytes]) -> list[BlockInfo | None]:
        return self.inner.stat(keys)

    def exists(self, keys: Sequence[bytes]) -> list[bool]:
        return self.inner.exists(keys)

    def lookup(self, keys: Sequence[bytes], lease_ms: int = 0) -> LookupResult:
        return self.inner.lookup(keys, lease_ms)

    def release_lease(self, lease_id: str) -> None:
        self.inner.release_lease(lease_id)

    def delete(self, keys: Sequence[bytes]) -> list[ItemResult]:
        return self.inner.delete(keys)

    def open_session(self, ttl_s: float, keys: Sequence[bytes] = (), fingerprint: bytes = bytes(16)) -> SessionInfo:
        return self.inner.open_session(ttl_s, keys, fingerprint)

    def append(self, session_id: str, keys: Sequence[bytes]) -> SessionInfo:
        return self.inner.append(session_id, keys)

    def suspend(self, session_id: str, pause_ttl_s: float) -> SessionInfo:
        return self.inner.suspend(session_id, pause_ttl_s)

    def resume(self, session_id: str) -> ResumeResult:
        return self.inner.resume(session_id)

    def fork(self, session_id: str, prefix_len: int | None = None, ttl_s: float | None = None) -> SessionInfo:
        return self.inner.fork(session_id, prefix_len, ttl_s)

    def close_session(self, session_id: str) -> SessionInfo:
        return self.inner.close_session(session_id)

    def session_info(self, session_id: str) -> SessionInfo:
        return self.inner.session_info(session_id)

    def invalidate_keys(self, keys: Sequence[bytes]) -> int:
        return self.inner.invalidate_keys(keys)

    def invalidate_prefix(self, key: bytes) -> int:
        return self.inner.invalidate_prefix(key)

    def invalidate_session(self, session_id: str) -> int:
        return self.inner.invalidate_session(session_id)

    def invalidate_model(self, fingerprint: bytes) -> int:
        return self.inner.invalidate_model(fingerprint)

    def invalidate_namespace(self) -> int:
        return self.inner.invalidate_namespace()

    def capabilities(self) -> Capabilities:
        return self.inner.capabilities()

    def stats(self) -> dict[str, Any]:
        return self.inner.stats()

    def close(self) -> None:
        self.inner.close()

    @classmethod
    def opened_elsewhere(cls, target: FaultyTarget) -> None:
        """Hook: the target was opened over existing data by its spec (a child process)."""

    @classmethod
    def started(cls, target: FaultyTarget) -> None:
        """Hook: the target was started again (after a stop or a killed child)."""

    def flush(self) -> None:
        flush = getattr(self.inner, "flush", None)
        if callable(flush):
            flush()


class FaultyTarget(Target):
    """A file target whose transports are wrapped in `wrapper`.

    `wrappers` holds the live wrappers by namespace (defects that cross namespaces use it) and
    `generation` counts starts (defects that show only after a restart use it).
    """

    restartable = True
    exclusive = True

    def __init__(self, name: str, wrapper: type[Wrapper], inner: FileTarget | None = None,
                 namespace_map: Callable[[str], str] | None = None) -> None:
        self.name = name
        self.inner = inner or FileTarget.temporary()
        self.wrapper = wrapper
        self.namespace_map = namespace_map or (lambda ns: ns)
        self.wrappers: dict[str, Wrapper] = {}
        self.generation = 0
        self.notes: dict[str, Any] = {}
        self.spec = "memkv.conformance.faulty:defect?" + urllib.parse.urlencode({"name": name, "url": self.inner.spec})

    def connect(self, namespace: str) -> Transport:
        from memkv.namespaces import check_namespace

        check_namespace(namespace)
        wrapped = self.wrapper(self.inner.connect(self.namespace_map(namespace)), self)
        wrapped.namespace = namespace
        self.wrappers[namespace] = wrapped
        return wrapped

    def capabilities(self) -> Capabilities:
        return self.connect("memkv-conformance-probe").capabilities()

    def make_small(self, capacity: int) -> Target:
        return FaultyTarget(self.name, self.wrapper, self.inner.make_small(capacity),  # type: ignore[arg-type]
                            self.namespace_map)

    def corrupt_block(self, namespace: str, key: bytes) -> bool:
        return self.inner.corrupt_block(self.namespace_map(namespace), key)

    def bump_format_version(self) -> bool:
        return self.inner.bump_format_version()

    def stop(self) -> None:
        self.wrappers.clear()
        self.inner.stop()

    def start(self) -> None:
        self.generation += 1
        self.inner.start()
        self.wrapper.started(self)

    def close(self) -> None:
        self.inner.close()


def defect(name: str, url: str | None = None) -> Target:
    """The faulty target `name` of the catalogue, over a fresh temporary store or the store at `url`."""
    from .defects import CATALOGUE

    entry = CATALOGUE[name]
    target = FaultyTarget(name, entry.wrapper, None if url is None else FileTarget(url), entry.namespace_map)
    if url is not None:
        entry.wrapper.opened_elsewhere(target)
    return target


__all__ = ["FaultyTarget", "Wrapper", "defect"]
