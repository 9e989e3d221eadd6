"""The TCP server commits the index rows of the items of one PUT frame in one transaction."""

from __future__ import annotations

from pathlib import Path

from helpers_store import key, payload

import memkv
from memkv.server.testing import in_process_server
from memkv.transport import PutItem


def test_a_tcp_put_of_several_items_commits_once(tmp_path: Path) -> None:
    server = in_process_server(str(tmp_path / "data"), admin_listen="off")
    try:
        statements: list[str] = []
        server.engine.index.db.set_trace_callback(statements.append)
        with memkv.connect(f"memkv+tcp://127.0.0.1:{server.address[1]}", namespace="ns") as client:
            results = client.put([PutItem(key(i), payload(i, 200_000)) for i in range(4)])
            assert all(r.ok for r in results)
            assert sum(s.strip().upper() == "COMMIT" for s in statements) == 1
            dest = bytearray(200_000)
            assert client.get_into([key(3)], [dest])[0].ok and bytes(dest) == payload(3, 200_000)
    finally:
        server.shutdown(0)
