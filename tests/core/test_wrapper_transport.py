"""WrapperTransport forwards every operation; optional features are protocols; close() is a template."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

import memkv
from memkv.backends.nixl import NixlTransport
from memkv.backends.tcp import TcpTransport
from memkv.conformance.faulty import Wrapper
from memkv.errors import InvalidArgument
from memkv.memory_kind import MemoryKind
from memkv.store.embedded import FileTransport
from memkv.transport import ItemResult, PutItem, Transport
from memkv.transport_features import Flushable, Pingable, RegistersMemory

ROOT = Path(__file__).resolve().parents[2]
KEY = bytes(range(16))

# every operation of the interface, with arguments to forward
CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("put", ([PutItem(KEY, b"x")],)), ("get_into", ([KEY], [bytearray(1)])), ("stat", ([KEY],)),
    ("exists", ([KEY],)), ("lookup", ([KEY], 5)), ("release_lease", ("lease-1",)), ("delete", ([KEY],)),
    ("open_session", (1.0, [KEY], bytes(16))), ("append", ("s", [KEY])), ("suspend", ("s", 2.0)),
    ("resume", ("s",)), ("fork", ("s", 1, 3.0)), ("close_session", ("s",)), ("session_info", ("s",)),
    ("invalidate_keys", ([KEY],)), ("invalidate_prefix", (KEY,)), ("invalidate_session", ("s",)),
    ("invalidate_model", (bytes(16),)), ("invalidate_namespace", ()), ("capabilities", ()), ("stats", ()),
]


def _inner() -> Any:
    inner = mock.create_autospec(Transport, instance=True)
    inner.namespace = "team-a"
    return inner


def test_every_abstract_operation_is_in_the_table() -> None:
    assert {name for name, _ in CALLS} == set(Transport.__abstractmethods__) - {"_close"}


@pytest.mark.parametrize(("name", "args"), CALLS, ids=[name for name, _ in CALLS])
def test_wrapper_forwards_each_operation(name: str, args: tuple[Any, ...]) -> None:
    inner = _inner()
    wrapper = memkv.WrapperTransport(inner)
    answer = getattr(wrapper, name)(*args)
    getattr(inner, name).assert_called_once_with(*args)
    if name != "release_lease":  # the one operation without an answer
        assert answer is getattr(inner, name).return_value
    assert wrapper.namespace == "team-a"


def test_async_forms_and_conveniences_run_the_wrappers_own_put() -> None:
    seen: list[int] = []

    class Counting(memkv.WrapperTransport):
        def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
            seen.append(len(items))
            return [ItemResult() for _ in items]

    inner = _inner()
    wrapper = Counting(inner)
    wrapper.put_one(KEY, b"a")
    assert wrapper.put_async([PutItem(KEY, b"b"), PutItem(KEY, b"c")]).result(timeout=10) == [ItemResult()] * 2
    wrapper.put_chain(bytes(16), [KEY], [b"d"])
    assert seen == [1, 2, 1] and not inner.put.called
    wrapper.close()


def test_close_waits_for_operations_in_flight_then_closes_inner_once() -> None:
    release, started = threading.Event(), threading.Event()
    inner = _inner()

    def slow_put(items: Sequence[PutItem]) -> list[ItemResult]:
        started.set()
        release.wait(10)
        return [ItemResult()]

    inner.put.side_effect = slow_put
    wrapper = memkv.WrapperTransport(inner)
    future = wrapper.put_async([PutItem(KEY, b"x")])
    assert started.wait(10)
    closer = threading.Thread(target=wrapper.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive() and not inner.close.called  # still waiting for the put in flight
    release.set()
    closer.join(10)
    assert future.result() == [ItemResult()]
    wrapper.close()
    inner.close.assert_called_once_with()


def test_backends_implement_the_close_hook_not_close() -> None:
    for backend in (FileTransport, TcpTransport, NixlTransport, memkv.WrapperTransport, Wrapper):
        assert "close" not in vars(backend), backend
        assert "_close" in vars(backend) or backend is Wrapper


def test_optional_features_are_protocols(tmp_path: Path) -> None:
    store = memkv.connect(f"file://{tmp_path}/store?capacity=16MiB", namespace="team-a")
    try:
        assert isinstance(store, Flushable)
        assert not isinstance(store, Pingable) and not isinstance(store, RegistersMemory)
        plain = memkv.WrapperTransport(store)
        assert not isinstance(plain, Flushable)  # not forwarded: the wrapper says what it offers itself
        faulty = Wrapper(store)
        assert isinstance(faulty, Flushable)
        store.put_one(KEY, b"payload")
        faulty.flush()
    finally:
        store.close()
    for feature in (Pingable, RegistersMemory):
        assert issubclass(NixlTransport, feature)
    assert issubclass(TcpTransport, Pingable) and not issubclass(TcpTransport, RegistersMemory)


def test_memory_kinds_have_one_spelling() -> None:
    assert [(k.value, k.name) for k in MemoryKind] == [(0, "DRAM"), (1, "VRAM")]
    assert MemoryKind.of(1) is MemoryKind.VRAM
    with pytest.raises(InvalidArgument, match="unknown NIXL memory kind 7"):
        MemoryKind.of(7)


def test_readme_wrapper_example_runs(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"## Composing transports.*?```python\n(.*?)```", text, re.S)
    assert found is not None
    code = found.group(1).replace("/tmp/memkv-wrapped", str(tmp_path / "store"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "8192 bytes put, flushable: True"
