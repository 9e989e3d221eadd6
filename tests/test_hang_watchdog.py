"""The last line of defence of tests/conftest.py: a test stuck where pytest-timeout's signal
cannot reach it ends the run, with every thread's stack, instead of hanging CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

# Locks a default pthread mutex twice: the second lock waits forever in C and, unlike Python's
# own locks, is not interrupted by a signal, so pytest-timeout cannot end it.
STUCK_TEST = '''
import ctypes

import pytest


@pytest.mark.timeout(1)
def test_stuck_in_c():
    libc = ctypes.CDLL(None)
    mutex = ctypes.create_string_buffer(64)
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)
'''


def test_a_test_stuck_beyond_pytest_timeout_ends_the_run_with_its_stack(tmp_path: Path) -> None:
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_stuck.py").write_text(STUCK_TEST, encoding="utf-8")
    env = {**os.environ, "MEMKV_TEST_HANG_GRACE_S": "2"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_stuck.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Timeout (0:00:04)!" in done.stderr
    assert 'test_stuck.py", line 12 in test_stuck_in_c' in done.stderr
