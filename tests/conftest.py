"""Shared test fixtures for memkv's own tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from memkv.conformance.plugin import REGRESSION_SEED
from memkv.conformance.seeds import SEED_ENV
from memkv.store.embedded import FileTransport

# Every conformance run of memkv's own tests (the per-backend certifications, the certification tests,
# the documented `memkv conformance` commands) walks from the fixed regression seed unless told
# otherwise: CI runs once, and a rare path found by a fresh draw must not fail it by chance. A
# certification outside the tests still draws a fresh seed per run (docs/conformance.md).
os.environ.setdefault(SEED_ENV, str(REGRESSION_SEED))

# The property tests of tests/ draw the same examples in every run (a rare draw must not fail CI by
# chance) and have no time limits a loaded 2-core machine could miss. The conformance checks set
# their own settings and seed (memkv/conformance/properties.py, checks/test_model.py).
settings.register_profile("memkv-tests", derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("memkv-tests")


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
