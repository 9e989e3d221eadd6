"""Shared test fixtures for memkv's own tests."""

from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import Generator, Iterator
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


# The real standard error, kept before output capturing replaces file descriptor 2.
HANG_REPORT_FD = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requirement(*ids): spec requirement IDs this test checks")
    config.stash[HANG_REPORT_FD] = os.dup(sys.stderr.fileno())


def pytest_unconfigure(config: pytest.Config) -> None:
    os.close(config.stash[HANG_REPORT_FD])


# Added to twice a test's timeout before the watchdog below ends the run (tests/test_hang_watchdog.py lowers it).
HANG_GRACE_S = float(os.environ.get("MEMKV_TEST_HANG_GRACE_S", "60"))


def _hang_limit_s(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker and marker.args else float(item.config.getini("timeout") or 300)
    return 2 * limit + HANG_GRACE_S


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    """The last line of defence against a hang that pytest-timeout cannot end.

    pytest-timeout interrupts a test with a signal, which only works once Python code runs again:
    a thread stuck in a system call that retries on EINTR never sees it, and CI would wait out its
    own limit with nothing printed. Past twice the test's timeout, faulthandler prints every
    thread's stack and ends the run (exit status 1), so the failure names the place it hung.
    """
    faulthandler.dump_traceback_later(_hang_limit_s(item), exit=True, file=item.config.stash[HANG_REPORT_FD])
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def file_transport(store_dir: Path) -> Iterator[FileTransport]:
    transport = FileTransport.open(str(store_dir), capacity=64 * 1024 * 1024, unit=1024 * 1024)
    yield transport
    transport.close()
