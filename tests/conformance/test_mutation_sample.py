"""Mutation testing of the reference implementation, sampled for CI (tools/mutation.py).

A fixed-seed sample of cosmic-ray mutants of memkv/store/ and the file backend, each tested by the
conformance suite against the file backend; the kill rate of the sample must stay at or above the
floor. The full campaign (every mutant, hours) is `python -m tools.mutation --report FILE`; its
command and result are in docs/conformance.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SAMPLE = 4
FLOOR = 0.75


def test_sampled_mutants_are_killed_by_the_conformance_suite(tmp_path: Path) -> None:
    report = tmp_path / "mutation.json"
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "tools.mutation", "--sample", str(SAMPLE), "--floor", str(FLOOR),
                           "--report", str(report)], cwd=root, capture_output=True, text=True, timeout=900)
    summary = json.loads(report.read_text())
    assert summary["tested"] == SAMPLE, done.stderr[-3000:]
    assert done.returncode == 0, (summary["survivors"], done.stderr[-2000:])
    assert summary["kill_rate"] >= FLOOR


def test_mutation_scope_names_every_store_module_once() -> None:
    """tools/mutation_scope.toml is data: every module of memkv/store/ is mutated or left out with a
    reason, and every module it names exists (edit it when modules move)."""
    import importlib.util
    import tomllib

    spec = importlib.util.spec_from_file_location("mutation_tool", Path(__file__).resolve().parents[2] / "tools"
                                                  / "mutation.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    ROOT, SCOPE, scope = tool.ROOT, tool.SCOPE, tool.scope

    data = tomllib.loads(SCOPE.read_text())
    mutated, left_out = set(scope()), dict(data["left_out"])
    store = {str(p.relative_to(ROOT)) for p in (ROOT / "memkv" / "store").glob("*.py") if p.name != "__init__.py"}
    assert not mutated & set(left_out), mutated & set(left_out)
    assert store <= mutated | set(left_out), sorted(store - mutated - set(left_out))
    assert all(reason.strip() for reason in left_out.values())
    assert all((ROOT / m).is_file() for m in left_out), [m for m in left_out if not (ROOT / m).is_file()]
