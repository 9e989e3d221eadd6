"""Every memkv process that used NIXL exits with its normal status (MKV-WIRE-030, MKV-WIRE-020).

On a host with rdma-core installed (CI installs it, as production has it) the NIXL wheel's EFA
UCX module used to load the host's libibverbs and libnl beside the wheel's copies, and every
such process died with SIGSEGV at interpreter exit after doing its work. These tests run real
processes and check their exit status: a bare agent, a client, `memkv serve --nixl on` on
SIGTERM, `memkv bench --backend nixl` and a conformance worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from memkv.nixl.agent import availability
from memkv.server.testing import ServerProcess, write_keys_file

NIXL_OK, NIXL_REASON = availability()
pytestmark = pytest.mark.skipif(not NIXL_OK, reason=f"NIXL unavailable: {NIXL_REASON}")
NS = "exit-ns"
TIMEOUT = 180


def _env() -> dict[str, str]:
    env = dict(os.environ, UCX_TLS="tcp", PYTHONUNBUFFERED="1")
    env.pop("UCX_MODULES", None)  # memkv decides, as on a fresh host (this process may have set it)
    return env


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, env=_env(), **kwargs)  # type: ignore[call-overload, no-any-return]


def _ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, f"exit status {proc.returncode}; stderr: {proc.stderr[-2000:]}"


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    keys = tmp_path_factory.mktemp("exit-keys") / "keys.yaml"
    return str(keys), write_keys_file(keys, {NS: [("w", "write")]})


def _serve(tmp_path: Path, keys: str | None, monkeypatch: pytest.MonkeyPatch) -> ServerProcess:
    monkeypatch.setenv("UCX_TLS", "tcp")
    monkeypatch.delenv("UCX_MODULES", raising=False)
    return ServerProcess(str(tmp_path / "store"), keys, capacity="256MiB",
                         extra=["--admin-listen", "off", "--nixl", "on", "--nixl-staging", "32MiB"])


@pytest.fixture
def server(tmp_path: Path, creds: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[ServerProcess]:
    with _serve(tmp_path, creds[0], monkeypatch) as proc:
        yield proc


@pytest.fixture
def open_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerProcess]:
    with _serve(tmp_path, None, monkeypatch) as proc:
        yield proc


CLIENT = """
import sys, memkv, numpy as np
from memkv.transport import PutItem
t = memkv.connect(sys.argv[1], namespace=sys.argv[2], key=sys.argv[3])
assert t.nixl_active
data = np.arange(2 << 20, dtype=np.uint8)
assert t.put([PutItem(b"k" * 16, data)])[0].ok
out = np.zeros_like(data)
assert t.get_into([b"k" * 16], [out])[0].ok and (out == data).all()
t.close()
print("client done")
"""


@pytest.mark.requirement("MKV-WIRE-030")
def test_a_process_that_created_an_agent_exits_zero() -> None:
    proc = _run([sys.executable, "-c", "from memkv.nixl.agent import NixlAgent; NixlAgent('bare'); print('made')"])
    _ok(proc)
    assert "made" in proc.stdout


@pytest.mark.requirement("MKV-WIRE-030", "MKV-WIRE-020")
def test_client_exits_zero_and_server_exits_zero_on_sigterm(server: ServerProcess,
                                                             creds: tuple[str, dict[str, str]]) -> None:
    url = f"memkv+nixl://{server.host}:{server.port}?transport=nixl"
    proc = _run([sys.executable, "-c", CLIENT, url, NS, creds[1]["w"]])
    _ok(proc)
    assert "client done" in proc.stdout
    assert server.terminate() == 0, server.log_path.read_text()[-2000:]


@pytest.mark.requirement("MKV-WIRE-030")
def test_conformance_worker_exits_zero(open_server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMKV_TRANSPORT", "nixl")  # strict: no silent fall-back to the TCP data path
    url = f"memkv+nixl://{open_server.host}:{open_server.port}"
    proc = _run([sys.executable, "-m", "memkv.conformance.worker", "history", "--target", url, "--namespace", NS,
                 "--client", "0", "--seed", "1", "--ops", "20"])
    _ok(proc)
    assert proc.stdout.count("{") >= 20


@pytest.mark.requirement("MKV-WIRE-030")
def test_bench_nixl_exits_zero(tmp_path: Path) -> None:
    proc = _run([sys.executable, "-m", "memkv.cli.main", "bench", "--backend", "nixl", "--sizes", "2MiB",
                 "--count", "2",                 "--rounds", "1", "--dir", str(tmp_path), "--quiet", "--json"])
    _ok(proc)
    report = json.loads(proc.stdout)  # NIXL's own INFO lines go to stderr, not into the JSON
    assert report["backend"] == "nixl"
