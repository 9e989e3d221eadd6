"""`memkv demo --engine NAME` as docs/integrations.md shows it, run where the engine is installed.

In an engine's tox environment (MEMKV_REQUIRE_ENGINE names it) the documented command runs
exactly as written and must report the shared prefix reused byte-exact; where an engine is
absent, the command must fail with the install command instead of a traceback.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENGINES = ("vllm", "lmcache", "sglang")
pytestmark = pytest.mark.requirement("MKV-INT-004")


def documented_demo_commands() -> dict[str, str]:
    """The `memkv demo --engine NAME` lines of docs/integrations.md's sh blocks, by engine."""
    commands: dict[str, str] = {}
    in_sh = False
    for line in (REPO / "docs" / "integrations.md").read_text().splitlines():
        if line.startswith("```"):
            in_sh = line.strip() == "```sh" and not in_sh
            continue
        match = re.match(r"memkv demo --engine (\w+)\b", line)
        if in_sh and match:
            commands[match.group(1)] = line
    return commands


def run_shell(command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONHASHSEED", None)  # the demo pins it for its engine processes, as documented
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=timeout, env=env)


def test_every_engine_has_a_documented_demo_command() -> None:
    assert sorted(documented_demo_commands()) == sorted(ENGINES)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_documented_demo_stores_and_reloads_through_the_engine(engine: str) -> None:
    if os.environ.get("MEMKV_REQUIRE_ENGINE") != engine and importlib.util.find_spec(engine) is None:
        pytest.skip(f"{engine} is not installed here; `tox -e {engine}` runs its demo")
    done = run_shell(documented_demo_commands()[engine], timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "memkv serve listening on memkv+tcp://127.0.0.1:" in done.stdout, output[-4000:]
    assert "shared prefix reused byte-exact: 4 of 4 blocks" in done.stdout, output[-4000:]


def test_an_absent_engine_is_named_with_its_install_command() -> None:
    absent = [e for e in ENGINES if importlib.util.find_spec(e) is None]
    if not absent:
        pytest.skip("every engine is installed here")
    done = run_shell(f"memkv demo --engine {absent[0]}", timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"needs {absent[0]}".lower() in done.stderr.lower() and "pip install" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
