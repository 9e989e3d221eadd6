"""Deliberately faulty targets: small wrappers around the correct file backend.

The suite's own tests run the conformance suite against each and assert that the RIGHT
requirement fails. The catalogue of defects is in memkv/conformance/defects.py; each is reached as the
target `memkv.conformance.faulty:defect?name=NAME`. A faulty target's `spec` names its data directory
(`&url=file://...`), so the child processes of the durability and concurrency checks reopen the
same data through the same defect, as a third-party target's `spec` must.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

from memkv.transport import Capabilities, Transport
from memkv.transport_features import Flushable
from memkv.wrapper_transport import WrapperTransport

from .target import FileTarget, Target


class Wrapper(WrapperTransport):
    """Forwards everything to a correct transport; subclasses override one behaviour."""

    def __init__(self, inner: Transport, target: FaultyTarget | None = None) -> None:
        super().__init__(inner)
        self.target = target

    def flush(self) -> None:
        if isinstance(self.inner, Flushable):
            self.inner.flush()

    @classmethod
    def opened_elsewhere(cls, target: FaultyTarget) -> None:
        """Hook: the target was opened over existing data by its spec (a child process)."""

    @classmethod
    def started(cls, target: FaultyTarget) -> None:
        """Hook: the target was started again (after a stop or a killed child)."""


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
