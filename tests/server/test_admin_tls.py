"""The admin API over TLS: certificate and key in the settings, clients verify (issue 12)."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from memkv.cli import main as cli
from memkv.errors import ErrorCode, MemkvError
from memkv.server.service import MemkvServer
from memkv.server.testing import in_process_server, write_keys_file


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[MemkvServer, str, Path, dict[str, str]]]:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = tmp_path / "admin.pem", tmp_path / "admin.key", tmp_path / "ca.pem"
    certificate.cert_chain_pems[0].write_to_path(str(cert_file))
    certificate.private_key_pem.write_to_path(str(key_file))
    authority.cert_pem.write_to_path(str(ca_file))
    creds = write_keys_file(tmp_path / "keys.yaml", {"team-a": [("a-admin", "admin")]})
    server = in_process_server(str(tmp_path / "data"), str(tmp_path / "keys.yaml"), capacity=64 * 1024 * 1024,
                               admin_tls_cert=str(cert_file), admin_tls_key=str(key_file))
    assert server.admin_address is not None
    yield server, f"https://127.0.0.1:{server.admin_address[1]}", ca_file, creds
    server.shutdown()


@pytest.mark.requirement("MKV-ADM-024")
def test_the_admin_api_serves_https_and_the_cli_verifies_it(
        tls_server: tuple[MemkvServer, str, Path, dict[str, str]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, url, ca_file, creds = tls_server
    key_file = tmp_path / "admin.cred"
    key_file.write_text(creds["a-admin"])
    assert cli.main(["admin", "--url", url, "--ca-file", str(ca_file), "--key-file", str(key_file), "status"]) == 0
    assert "team-a" in capsys.readouterr().out
    # without the CA the certificate does not verify: refused, not silently trusted
    assert cli.main(["admin", "--url", url, "--key-file", str(key_file), "status"]) == 2
    assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err


@pytest.mark.requirement("MKV-ADM-024")
def test_plain_http_gets_no_answer_from_the_tls_port(tls_server: tuple[MemkvServer, str, Path, dict[str, str]]) -> None:
    _, url, _, _ = tls_server
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(url.replace("https:", "http:") + "/v1/health", timeout=5).read()


def test_the_server_still_answers_after_a_failed_handshake(
        tls_server: tuple[MemkvServer, str, Path, dict[str, str]]) -> None:
    _, url, ca_file, _ = tls_server
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/v1/health", timeout=5, context=ssl.create_default_context())
    context = ssl.create_default_context(cafile=str(ca_file))
    with urllib.request.urlopen(url + "/v1/health", timeout=5, context=context) as answer:
        assert answer.status == 200


def test_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    from memkv.server.settings import load_settings

    with pytest.raises(MemkvError) as caught:
        load_settings({"data": str(tmp_path), "admin_tls_cert": "/x.pem"})
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT and "admin_tls_key" in caught.value.message
    with pytest.raises(MemkvError) as caught:
        in_process_server(str(tmp_path / "d"), None, admin_tls_cert=str(tmp_path / "nope.pem"),
                          admin_tls_key=str(tmp_path / "nope.key"))
    assert "nope.pem" in caught.value.message
    assert not (tmp_path / "d" / "device.img").exists()
