"""The file backend as an implementation of an older spec minor would behave: the target that shows a
certification holding a target to the version it declares (spec/CHANGELOG.md, "How a target declares
its version").

    memkv conformance --target 'memkv.conformance.targets.older:file?version=1.1' --certify

It declares `version` (default 1.1) in `capabilities` and behaves as `behaves` (default: `version`):
before 1.2 it invalidates by prefix as 1.1 implementations did, from a stored key only (MKV-INV-008,
added in 1.2, also removes what is chained after a key that is not stored). Everything else is the
file backend. `url=` names the
data directory, so the child processes of the durability and concurrency checks reopen the same data.
"""

from __future__ import annotations

import dataclasses
import urllib.parse

from memkv.transport import Capabilities

from ..faulty import FaultyTarget, Wrapper
from ..requirements import version_tuple
from ..target import FileTarget, Target

PREFIX_FROM_ABSENT_KEYS = (1, 2)
"""The version whose invalidation by prefix starts from a key that is not stored (MKV-INV-008)."""


def _declaring(version: str, behaviour: str) -> type[Wrapper]:
    behaves = version_tuple(behaviour)

    class Declaring(Wrapper):
        def capabilities(self) -> Capabilities:
            return dataclasses.replace(self.inner.capabilities(), spec_version=version)

        def invalidate_prefix(self, key: bytes) -> int:
            if behaves < PREFIX_FROM_ABSENT_KEYS and not self.inner.exists([key])[0]:
                return 0
            return self.inner.invalidate_prefix(key)

    return Declaring


class DeclaringTarget(FaultyTarget):
    """The file target declaring `version` and behaving as `behaviour`; its `spec` reopens the same data."""

    def __init__(self, version: str, behaviour: str, inner: FileTarget) -> None:
        super().__init__(f"file declaring {version}", _declaring(version, behaviour), inner)
        self.version, self.behaviour = version, behaviour
        self.spec = "memkv.conformance.targets.older:file?" + urllib.parse.urlencode(
            {"version": version, "behaves": behaviour, "url": inner.spec})

    def make_small(self, capacity: int) -> Target:
        small = self.inner.make_small(capacity)
        assert isinstance(small, FileTarget)
        return DeclaringTarget(self.version, self.behaviour, small)


def file(version: str = "1.1", behaves: str | None = None, url: str | None = None) -> Target:
    """The file backend declaring `version` and behaving as `behaves` (default: the same; a later
    declaration than behaviour is a faulty target), over a fresh temporary store or the store at `url`."""
    behaviour = behaves or version
    version_tuple(version), version_tuple(behaviour)  # a malformed version is refused here, not in a run
    return DeclaringTarget(version, behaviour, FileTarget(url) if url is not None else FileTarget.temporary())


__all__ = ["DeclaringTarget", "file"]
