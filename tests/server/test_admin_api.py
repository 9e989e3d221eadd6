"""Admin HTTP API: endpoints, auth, metrics, the CLI client, and schemathesis (MKV-ADM-*)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import memkv
from memkv import PutItem
from memkv.server.service import MemkvServer
from memkv.server.testing import in_process_server, write_keys_file

req = pytest.mark.requirement
SPEC = Path(__file__).resolve().parents[2] / "spec" / "openapi.yaml"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MemkvServer, dict[str, str], str]]:
    root = tmp_path_factory.mktemp("admin")
    creds = write_keys_file(root / "keys.yaml", {"team-a": [("a-admin", "admin"), ("a-writer", "write")],
                                                  "team-b": [("b-admin", "admin")]})
    srv = in_process_server(str(root / "data"), str(root / "keys.yaml"))
    assert srv.admin_address is not None
    yield srv, creds, f"http://{srv.admin_address[0]}:{srv.admin_address[1]}"
    srv.shutdown()


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@req("MKV-ADM-001", "MKV-ADM-002")
def test_health_and_ready_need_no_key(server: tuple[MemkvServer, dict[str, str], str]) -> None:
    _, _, url = server
    status, body = _get(url + "/v1/health")
    assert status == 200 and json.loads(body)["status"] == "healthy"
    status, body = _get(url + "/v1/ready")
    assert status == 200 and json.loads(body)["ready"] is True


@req("MKV-ADM-003", "MKV-ADM-007")
def test_status_needs_an_admin_key_and_shows_own_namespace(server: tuple[MemkvServer, dict[str, str], str]) -> None:
    srv, creds, url = server
    assert _get(url + "/v1/status")[0] == 401
    assert _get(url + "/v1/status", "a-admin:" + "00" * 32)[0] == 401
    assert _get(url + "/v1/status", creds["a-writer"])[0] == 403
    t = memkv.connect(f"memkv+tcp://{srv.address[0]}:{srv.address[1]}", namespace="team-a", key=creds["a-writer"])
    t.put([PutItem(os.urandom(16), b"x" * 1000)])
    status, body = _get(url + "/v1/status", creds["a-admin"])
    data = json.loads(body)
    assert status == 200 and set(data["namespaces"]) == {"team-a"}
    assert data["namespaces"]["team-a"]["blocks"] >= 1 and data["capacity"]["raw_bytes"] > 0
    assert data["connections"]["open"] >= 1
    t.close()


@req("MKV-ADM-004", "MKV-ADM-005")
def test_sessions_and_invalidation(server: tuple[MemkvServer, dict[str, str], str], capsys: pytest.CaptureFixture[str]
                                   ) -> None:
    srv, creds, url = server
    t = memkv.connect(f"memkv+tcp://{srv.address[0]}:{srv.address[1]}", namespace="team-a", key=creds["a-writer"])
    keys = [os.urandom(16) for _ in range(3)]
    t.put([PutItem(k, b"s" * 10) for k in keys])
    session = t.open_session(60, keys)
    status, body = _get(url + "/v1/namespaces/team-a/sessions", creds["a-admin"])
    assert status == 200 and session.session_id in body.decode()
    status, body = _get(f"{url}/v1/namespaces/team-a/sessions/{session.session_id}", creds["a-admin"])
    assert status == 200 and json.loads(body)["keys"] == [k.hex() for k in keys]
    assert _get(f"{url}/v1/namespaces/team-a/sessions/nope", creds["a-admin"])[0] == 404
    assert _get(url + "/v1/namespaces/team-b/sessions", creds["a-admin"])[0] == 403
    from memkv.cli import admin as cli_admin

    parser = argparse.ArgumentParser()
    cli_admin.add_parser(parser.add_subparsers())
    key_file = Path(srv.config.data_dir).parent / "admin.cred"
    key_file.write_text(creds["a-admin"])
    args = parser.parse_args(["admin", "--url", url, "--key-file", str(key_file), "invalidate", "team-a",
                              "--session", session.session_id])
    assert cli_admin.run(args) == 0
    assert capsys.readouterr().out == "invalidated 3 blocks in team-a\n"  # JSON only with --json
    assert t.exists(keys) == [False] * 3
    args = parser.parse_args(["admin", "--url", url, "--key-file", str(key_file), "status"])
    assert cli_admin.run(args) == 0 and "team-a" in capsys.readouterr().out
    t.close()


@req("MKV-ADM-006")
def test_metrics(server: tuple[MemkvServer, dict[str, str], str]) -> None:
    srv, creds, url = server
    t = memkv.connect(f"memkv+tcp://{srv.address[0]}:{srv.address[1]}", namespace="team-a", key=creds["a-writer"])
    key = os.urandom(16)
    t.put([PutItem(key, b"m" * 4096)])
    t.get([key, os.urandom(16)])
    t.close()
    assert _get(url + "/metrics")[0] == 401
    status, body = _get(url + "/metrics", creds["a-admin"])
    text = body.decode()
    assert status == 200
    for name in ("memkv_operations_total", "memkv_bytes_total", "memkv_request_seconds_bucket",
                 "memkv_store_hits_total", "memkv_store_misses_total", "memkv_store_evictions_total",
                 "memkv_connections", "memkv_store_capacity_bytes"):
        assert name in text, name


@req("MKV-ADM-008")
@pytest.mark.slow
def test_schemathesis_conformance(server: tuple[MemkvServer, dict[str, str], str], tmp_path: Path) -> None:
    _, creds, url = server
    cli = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [str(cli), "run", str(SPEC), "--url", url, "-H", f"Authorization: Bearer {creds['a-admin']}",
         "--checks", "not_a_server_error,status_code_conformance,response_schema_conformance,"
         "negative_data_rejection,ignored_auth", "--max-examples", "25", "--seed", "1",
         "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=240, env=os.environ | {"NO_COLOR": "1"}, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:]
