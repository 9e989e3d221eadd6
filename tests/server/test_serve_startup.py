"""`memkv serve` start-up: ports before the store, addresses in errors, the admin CLI (issue 12)."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import memkv
from memkv.cli import main as cli
from memkv.errors import ErrorCode, MemkvError
from memkv.server.testing import in_process_server, write_keys_file

req = pytest.mark.requirement


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        yield int(holder.getsockname()[1])


@req("MKV-CAP-031")
@pytest.mark.parametrize("which", ["wire", "admin"])
def test_a_busy_port_is_named_and_costs_no_store(
        tmp_path: Path, busy_port: int, which: str, capsys: pytest.CaptureFixture[str]) -> None:
    listen = f"127.0.0.1:{busy_port}" if which == "wire" else "127.0.0.1:0"
    admin = "127.0.0.1:0" if which == "wire" else f"127.0.0.1:{busy_port}"
    status = cli.main(["serve", "--data", str(tmp_path / "data"), "--capacity", "64MiB", "--insecure-no-auth",
                       "--listen", listen, "--admin-listen", admin])
    err = capsys.readouterr().err
    assert status == 2
    assert f"127.0.0.1:{busy_port}" in err
    assert ("admin" in err) == (which == "admin")
    assert not (tmp_path / "data" / "device.img").exists()


@pytest.mark.parametrize(("flag", "address"), [("--listen", "127.0.0.1:99999"), ("--listen", "127.0.0.1:-1"),
                                                ("--admin-listen", ":70000"), ("--listen", "127.0.0.1:")])
def test_a_port_outside_0_to_65535_is_refused_before_the_store(
        tmp_path: Path, flag: str, address: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = {"--listen": "127.0.0.1:0", "--admin-listen": "127.0.0.1:0"} | {flag: address}
    status = cli.main(["serve", "--data", str(tmp_path / "data"), "--capacity", "64MiB", "--insecure-no-auth",
                       *[part for item in args.items() for part in item]])
    err = capsys.readouterr().err
    assert status == 2
    assert "INVALID_ARGUMENT" in err and repr(address) in err
    assert not (tmp_path / "data" / "device.img").exists()


def test_an_admin_port_past_65535_is_refused_before_the_store(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The admin port defaults to the data port + 1: next to 65535 there is none."""
    status = cli.main(["serve", "--data", str(tmp_path / "data"), "--capacity", "64MiB", "--insecure-no-auth",
                       "--listen", "127.0.0.1:65535"])
    err = capsys.readouterr().err
    assert status == 2
    assert "INVALID_ARGUMENT" in err and "65536" in err
    assert not (tmp_path / "data" / "device.img").exists()


@pytest.fixture
def admin_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    creds = write_keys_file(tmp_path / "keys.yaml", {"team-a": [("a-admin", "admin")]})
    srv = in_process_server(str(tmp_path / "data"), str(tmp_path / "keys.yaml"), capacity=64 * 1024 * 1024)
    assert srv.admin_address is not None
    key_file = tmp_path / "admin.cred"
    key_file.write_text(creds["a-admin"])
    yield f"http://127.0.0.1:{srv.admin_address[1]}", creds, key_file
    srv.shutdown()


def test_admin_invalidate_prints_json_only_when_asked(
        admin_server: tuple[str, dict[str, str], Path], capsys: pytest.CaptureFixture[str]) -> None:
    url, _, key_file = admin_server
    base = ["admin", "--url", url, "--key-file", str(key_file)]
    assert cli.main([*base, "invalidate", "team-a", "--all"]) == 0
    assert capsys.readouterr().out == "invalidated 0 blocks in team-a\n"
    assert cli.main([*base, "--json", "invalidate", "team-a", "--all"]) == 0
    assert json.loads(capsys.readouterr().out) == {"namespace": "team-a", "invalidated": 0}


def test_a_refused_admin_key_names_the_key_file_and_variable(
        admin_server: tuple[str, dict[str, str], Path], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    url, _, _ = admin_server
    monkeypatch.delenv("MEMKV_ADMIN_KEY", raising=False)
    assert cli.main(["admin", "--url", url, "status"]) == 2
    err = capsys.readouterr().err
    assert "UNAUTHENTICATED" in err and "--key-file" in err and "MEMKV_ADMIN_KEY" in err


def test_admin_wait_gives_up_with_the_address(capsys: pytest.CaptureFixture[str]) -> None:
    # a port that accepts nothing HTTP-like: nobody listens on the port after the busy one is closed
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = int(probe.getsockname()[1])
    assert cli.main(["admin", "--url", f"http://127.0.0.1:{free}", "--wait", "0.3", "health"]) == 2
    assert f"127.0.0.1:{free}" in capsys.readouterr().err


@req("MKV-ADM-023")
def test_metrics_export_no_created_series(admin_server: tuple[str, dict[str, str], Path]) -> None:
    url, creds, _ = admin_server
    request = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {creds['a-admin']}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        text = answer.read().decode()
    assert "memkv_operations_total" in text or "memkv_request_seconds" in text
    assert "_created" not in text


@req("MKV-WIRE-100")
def test_a_wire_client_at_the_admin_port_is_told_at_once(admin_server: tuple[str, dict[str, str], Path]) -> None:
    url, creds, _ = admin_server
    port = int(url.rsplit(":", 1)[1])
    started = time.monotonic()
    with pytest.raises(MemkvError) as caught:
        memkv.connect(f"memkv+tcp://127.0.0.1:{port}", namespace="team-a", key=creds["a-admin"], connect_timeout=10)
    assert time.monotonic() - started < 5
    assert caught.value.code is ErrorCode.PROTOCOL_ERROR
    assert f"127.0.0.1:{port} is an HTTP endpoint" in caught.value.message
    # and the admin API still answers HTTP on the same port
    with urllib.request.urlopen(url + "/v1/health", timeout=10) as answer:
        assert json.loads(answer.read())["status"] == "healthy"


def test_secret_errors_name_the_key_and_the_file(tmp_path: Path) -> None:
    from memkv.server.keyring import KeyRing

    keys = tmp_path / "keys.yaml"
    keys.write_text("namespaces:\n  team-a:\n    - {id: a-writer, secret: 'abc', role: write}\n")
    keys.chmod(0o600)
    with pytest.raises(MemkvError) as caught:
        KeyRing.load(str(keys))
    assert str(keys) in caught.value.message and "'a-writer'" in caught.value.message
    client_key = tmp_path / "client.key"
    client_key.write_text("a-writer:nothex\n")
    with pytest.raises(MemkvError) as caught:
        memkv.connect(f"memkv+tcp://127.0.0.1:9?key_file={client_key}")
    assert f"key_file {client_key}" in caught.value.message and "'a-writer'" in caught.value.message


def test_a_malformed_admin_key_names_its_source(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMKV_ADMIN_KEY", "a-admin:short")
    assert cli.main(["admin", "--url", "http://127.0.0.1:9", "status"]) == 2
    assert "MEMKV_ADMIN_KEY" in capsys.readouterr().err
