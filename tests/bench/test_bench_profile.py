"""`python -m memkv.bench.profile`: where the time of a TCP put or get goes, client and server."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from memkv.bench.profile import CallTree, main, profile, render

TOY = """
import time

def leaf():
    time.sleep(0.002)

def outer():
    leaf()
    leaf()
"""


@pytest.fixture
def toy_module() -> Iterator[types.ModuleType]:
    module = types.ModuleType("memkv_profile_toy")
    exec(TOY, module.__dict__)  # functions that call each other through the module's globals
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def test_a_call_is_counted_under_the_wrapped_caller(toy_module: types.ModuleType) -> None:
    tree = CallTree()
    tree.wrap(toy_module.__name__, "outer")
    tree.wrap(toy_module.__name__, "leaf")
    toy_module.outer()
    toy_module.leaf()
    rows = {tuple(r["path"]): r for r in tree.to_json()}
    assert set(rows) == {("outer",), ("outer", "leaf"), ("leaf",)}
    assert rows[("outer", "leaf")]["calls"] == 2 and rows[("leaf",)]["calls"] == 1
    assert rows[("outer",)]["ns"] >= rows[("outer", "leaf")]["ns"] >= 4_000_000
    lines = render(tree.to_json(), ops=1)
    assert [line.split()[-1] for line in lines[1:]] == ["outer", "leaf", "leaf"]  # children under parents
    tree.reset()
    assert tree.to_json() == []


def test_a_short_profile_names_the_data_path_of_both_ends(tmp_path: Path) -> None:
    report = profile("put", 256 * 1024, 0.3, str(tmp_path))
    assert report["ops"] > 0 and report["gb_per_s"] > 0
    assert report["client_cpu_us_per_op"] > 0 and report["server_cpu_us_per_op"] > 0
    client = {tuple(r["path"]) for r in report["client"]}
    server = {tuple(r["path"]) for r in report["server"]}
    assert ("TcpTransport.put", "payload_checksum") in client
    assert ("Connection._one_frame", "Connection._dispatch", "Connection._put", "StreamedPayload.fill",
            "Connection._recv_exact") in server
    assert ("Connection._one_frame", "Connection._dispatch", "Connection._put", "StorageEngine._settle") in server
    assert list(tmp_path.iterdir()) == []  # the server's store is removed


def test_the_command_prints_both_trees(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "not-yet"  # made, as memkv bench makes its --dir, and removed again
    assert main(["--sizes", "256KiB", "--ops", "get", "--seconds", "0.2", "--dir", str(missing)]) == 0
    assert list(tmp_path.iterdir()) == []
    out = capsys.readouterr().out
    assert out.startswith("get 256.0 KiB:") and "  client:" in out and "  server:" in out
    assert "StorageEngine.read_stream" in out and "TcpConnection._recv_hashed" in out
