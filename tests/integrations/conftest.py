"""A real `memkv serve` process on 127.0.0.1 for the engine adapters' contract tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memkv.server.testing import ServerProcess


@pytest.fixture
def memkv_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(str(tmp_path / "store"), capacity="128MiB")
    try:
        yield server
    finally:
        server.kill()
