"""Run an engine process of a contract test and read the `RESULT {json}` line it prints."""

from __future__ import annotations

import os
import subprocess
import sys

from memkv.integrations.demo_process import report_result, result_of

__all__ = ["engine_or_skip", "report_result", "result_of", "run_python"]


def run_python(args: list[str], env: dict[str, str] | None = None, timeout: float = 240) -> str:
    """Run `python ARGS` with a pinned PYTHONHASHSEED; its stdout and stderr (it must exit 0)."""
    environ = {**os.environ, "PYTHONHASHSEED": "0", **(env or {})}
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=environ)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def engine_or_skip(module: str, engine: str) -> None:
    """Skip where the engine is absent, but fail in its own tox environment (MEMKV_REQUIRE_ENGINE names
    it there), so that a broken engine install can never pass as a skipped test."""
    import importlib

    import pytest

    if os.environ.get("MEMKV_REQUIRE_ENGINE") == engine:
        importlib.import_module(module)
        return
    pytest.importorskip(module, reason=f"{engine} is not installed here; `tox -e {engine}` runs these tests")
