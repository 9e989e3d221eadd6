"""A memkv server with its S3 endpoint on 127.0.0.1, S3 clients for it, and raw HTTP requests."""

from __future__ import annotations

import dataclasses
import http.client
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from memkv.server.keyring import parse_credential
from memkv.server.service import MemkvServer
from memkv.server.testing import in_process_server, write_keys_file

KEYS = {"team-a": [("a-writer", "write"), ("a-reader", "read")], "team-b": [("b-writer", "write")]}


@dataclasses.dataclass
class S3Server:
    server: MemkvServer
    creds: dict[str, str]  # key id -> "<id>:<secret>" (empty without authentication)

    @property
    def host(self) -> str:
        return str(self.server.s3.address[0])

    @property
    def port(self) -> int:
        return int(self.server.s3.address[1])

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def tcp_url(self) -> str:
        host, port = self.server.address
        return f"memkv+tcp://{host}:{port}"

    def s3_credentials(self, key_id: str) -> tuple[str, str]:
        """(access key id, secret access key) of a namespace key, as spec/s3.md maps them."""
        kid, secret = parse_credential(self.creds[key_id])
        return kid, secret.hex()

    def client(self, key_id: str | None = "a-writer", secret: str | None = None, **config: Any) -> Any:
        import boto3
        import botocore.config

        kid, real_secret = self.s3_credentials(key_id) if key_id in self.creds else (key_id or "anonymous", "x" * 64)
        options = {"s3": {"addressing_style": "path"}, "retries": {"max_attempts": 0}, **config}
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=kid,
                            aws_secret_access_key=secret or real_secret, region_name="us-east-1",
                            config=botocore.config.Config(**options))

    def raw(self, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """One unsigned request: (status, headers with lower-case names, body)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            answer = conn.getresponse()
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
        finally:
            conn.close()

    def socket(self) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=10)


def start(tmp_path: Path, authenticated: bool = True, **settings: Any) -> Iterator[S3Server]:
    keys_file = tmp_path / "keys.yaml" if authenticated else None
    creds = write_keys_file(keys_file, KEYS) if keys_file else {}
    server = in_process_server(str(tmp_path / "store"), str(keys_file) if keys_file else None,
                               s3_listen="127.0.0.1:0", capacity=128 * 1024 * 1024, **settings)
    try:
        yield S3Server(server, creds)
    finally:
        server.shutdown(grace_s=1.0)
