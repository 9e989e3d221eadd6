"""Helpers the checks share: requirement failures, expected errors, payloads, fresh namespaces."""

from __future__ import annotations

import dataclasses
import itertools
import os
import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest

from memkv.errors import ErrorCode, MemkvError
from memkv.transport import Capabilities, ItemResult, Transport

from .requirements import declared_version, requirements
from .target import Target

T = TypeVar("T")

_NS_COUNTER = itertools.count(1)
_RUN_TAG = os.urandom(3).hex()


class RequirementFailure(AssertionError):
    """A check found a target breaking one requirement: which one, expected vs actual, a repro."""

    def __init__(self, requirement: str, message: str, expected: object = "", actual: object = "",
                 reproduction: str = "") -> None:
        super().__init__(f"[{requirement}] {message}\n  expected: {expected}\n  actual:   {actual}")
        self.requirement = requirement
        self.message = message
        self.expected = str(expected)
        self.actual = str(actual)
        self.reproduction = reproduction

    def to_dict(self) -> dict[str, str]:
        return {"requirement": self.requirement, "message": self.message, "expected": self.expected,
                "actual": self.actual, "reproduction": self.reproduction}


def fail(requirement: str, message: str, expected: object = "", actual: object = "", repro: str = "") -> None:
    raise RequirementFailure(requirement, message, expected, actual, repro)


def check(requirement: str, condition: bool, message: str, expected: object = "", actual: object = "",
          repro: str = "") -> None:
    if not condition:
        raise RequirementFailure(requirement, message, expected, actual, repro)


def outcome(fn: Callable[[], T]) -> tuple[ErrorCode, T | None]:
    """Run `fn`: (OK, value) or (code, None) for a spec error. Other exceptions propagate."""
    try:
        return ErrorCode.OK, fn()
    except MemkvError as exc:
        return exc.code, None


def item_status(fn: Callable[[], Sequence[ItemResult]], index: int = 0) -> ErrorCode:
    """Status of one item of a batch call; a whole-request error counts as that item's status."""
    try:
        results = fn()
    except MemkvError as exc:
        return exc.code
    return results[index].status


def expect_code(requirement: str, what: str, fn: Callable[[], Any], allowed: Sequence[ErrorCode],
                repro: str = "") -> ErrorCode:
    """Call `fn` and require one of `allowed` codes, as a raised error or as the first item's status.

    A non-spec exception is a failure of MKV-ERR-001 (errors come from the closed list).
    """
    try:
        result = fn()
    except MemkvError as exc:
        code = exc.code
        if not isinstance(code, ErrorCode):
            fail("MKV-ERR-001", f"{what}: error code outside the spec's closed list", "an ErrorCode", code, repro)
    except Exception as exc:
        fail("MKV-ERR-001", f"{what}: raised a non-spec exception", f"one of {names(allowed)}",
             f"{type(exc).__name__}: {exc}", repro)
        raise  # unreachable
    else:
        if isinstance(result, list) and result and isinstance(result[0], ItemResult):
            code = result[0].status
        else:
            code = ErrorCode.OK
    check(requirement, code in allowed, what, names(allowed), code.name, repro)
    return code


def names(codes: Sequence[ErrorCode]) -> str:
    return " or ".join(c.name for c in codes)


def payload(seed: int, size: int) -> bytes:
    """Deterministic, self-checking bytes: size and seed in the first 16 bytes, then PRNG bytes."""
    head = size.to_bytes(8, "little") + (seed & (2**64 - 1)).to_bytes(8, "little")
    body = random.Random(seed).randbytes(max(0, size - 16))
    return (head + body)[:size]


def payload_ok(data: bytes) -> bool:
    """True when `data` is exactly some `payload(seed, len(data))` (complete, unmixed)."""
    if len(data) < 16:
        return True
    size = int.from_bytes(data[:8], "little")
    seed = int.from_bytes(data[8:16], "little")
    return size == len(data) and data == payload(seed, size)


@dataclasses.dataclass
class Context:
    """What a check gets: the target, its declaration, fresh namespaces, deterministic randomness."""

    target: Target
    caps: Capabilities
    claimed: frozenset[str]
    seed: int
    examples: int
    steps: int
    certify: bool
    rng: random.Random = dataclasses.field(default_factory=random.Random)
    _open: list[Transport] = dataclasses.field(default_factory=list)
    _made: list[str] = dataclasses.field(default_factory=list)
    _small: dict[int, Context] = dataclasses.field(default_factory=dict)

    @property
    def limits(self) -> Any:
        return self.caps.limits

    def holds_to(self, requirement: str) -> bool:
        """Whether the spec version the target declares includes `requirement` (a check whose model
        follows a later version's rule uses the earlier rule for an older target)."""
        return requirements()[requirement].applies_to(declared_version(self.caps.spec_version))

    def namespace(self, prefix: str = "c") -> str:
        allocate = getattr(self.target, "allocate_namespace", None)
        allocated = allocate(prefix) if callable(allocate) else None
        name = allocated if isinstance(allocated, str) else f"{prefix}-{_RUN_TAG}-{next(_NS_COUNTER)}"[:64]
        self._made.append(name)
        return name

    def transport(self, namespace: str | None = None) -> Transport:
        transport = self.target.connect(namespace or self.namespace())
        self._open.append(transport)
        return transport

    def key(self) -> bytes:
        return self.rng.randbytes(16)

    def small(self, capacity: int) -> Context:
        """A context over a fresh small-capacity target (eviction checks); skips if none is offered."""
        if capacity not in self._small:
            made = self.target.make_small(capacity)
            if made is None:
                pytest.skip("the target offers no small-capacity instance (Target.make_small)")
            self._small[capacity] = Context(made, made.capabilities(), self.claimed, self.seed, self.examples,
                                            self.steps, self.certify, random.Random(self.rng.random()))
        return self._small[capacity]

    def empty_small(self, capacity: int) -> tuple[Context, Transport]:
        """The small-capacity context and a transport of a namespace emptied first."""
        small = self.small(capacity)
        transport = small.transport()
        transport.invalidate_namespace()
        return small, transport

    def close_transports(self) -> None:
        for transport in self._open:
            try:
                transport.close()
            except Exception:
                continue
        self._open.clear()
        for small in self._small.values():
            small.close_transports()

    def empty_namespaces(self) -> None:
        """After a check: remove what it stored in the namespaces it made, so that later checks and
        later runs against the same target do not find it full. Best effort: a target may refuse
        (a key without the admin role) or be stopped."""
        for namespace in self._made:
            try:
                transport = self.target.connect(namespace)
            except Exception:
                continue
            try:
                transport.invalidate_namespace()
            except Exception:
                pass
            finally:
                transport.close()
        self._made.clear()

def put_ok(t: Transport, key: bytes, data: bytes, requirement: str = "MKV-OPS-001", **kwargs: Any) -> None:
    from memkv.transport import PutItem

    result = t.put([PutItem(key, data, **kwargs)])[0]
    check(requirement, result.ok, "put of a valid block must succeed", "OK", f"{result.status.name} {result.message}",
          f"t.put([PutItem({key.hex()!r}, <{len(data)} bytes>)])")


def read(t: Transport, key: bytes) -> bytes | None:
    """The block's bytes, None when absent (NOT_FOUND); other errors propagate."""
    info = t.stat([key])[0]
    size = info.length if info is not None else 1
    buf = bytearray(max(size, 1))
    res = t.get_into([key], [buf])[0]
    if res.status is ErrorCode.NOT_FOUND:
        return None
    res.raise_for_status()
    return bytes(buf[: res.length])


__all__ = ["Context", "RequirementFailure", "check", "expect_code", "fail", "item_status", "names",
           "outcome", "payload", "payload_ok", "put_ok", "read"]


def kept(requirement: str, t: Transport, key: bytes, data: bytes, what: str, repro: str = "") -> None:
    """Require `key` present (else `requirement` fails); wrong bytes are a failure of MKV-OPS-001."""
    got = read(t, key)
    check(requirement, got is not None, what, "present", "absent", repro)
    check("MKV-OPS-001", got == data, f"{what}: get returns exactly the bytes put", f"{len(data)} bytes put",
          "other bytes", repro)


def launch_or_skip(memkv: Any, keys_file: str | None, **kwargs: Any) -> Any:
    """Another server of the target's implementation (Target.launch), or a skip saying how to get one."""
    hook = getattr(memkv.target, "launch", None)
    launched = hook(keys_file, **kwargs) if callable(hook) else None
    if launched is None:
        pytest.skip("the target cannot start further servers of the implementation (Target.launch); with a running "
                    "memkv server add launcher=memkv to the target URL")
    return launched
