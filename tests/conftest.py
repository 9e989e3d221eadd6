"""Shared test fixtures for memkv's own tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memkv.store.embedded import FileTransport


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requirement(*ids): spec requirement IDs this test checks")


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def file_transport(store_dir: Path) -> Iterator[FileTransport]:
    transport = FileTransport.open(str(store_dir), capacity=64 * 1024 * 1024, unit=1024 * 1024)
    yield transport
    transport.close()
