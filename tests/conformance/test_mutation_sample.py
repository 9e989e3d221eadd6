"""Mutation testing of the reference implementation in CI (tools/mutation.py): a regression gate.

CI runs a pinned list of cosmic-ray mutants of memkv/store/ that the conformance suite kills (each
tested by the suite against the file backend) and fails when one of them survives: the suite lost
a check it had. A sample drawn at random could not serve as a gate: mutants are named by module,
line and occurrence, so any edit of a store module redraws it, and at the suite's measured kill
rate (about 70%, docs/conformance.md) a fresh draw of four fails about a third of the time. The
kill rate itself is measured by the campaigns in docs/conformance.md.

When a store module changes, a pinned name can go stale: the tool then refuses it as unknown and
this test fails. Re-pin from a new sample: `python -m tools.mutation --sample 8 --report r.json`,
then pin killed mutants of different modules.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PINNED = (
    "memkv/store/allocator.py:139 core/ReplaceBinaryOperator_Add_BitAnd #13",
    "memkv/store/resident.py:63 core/ReplaceComparisonOperator_Gt_Eq #0",
    "memkv/store/superblock.py:43 core/ReplaceBinaryOperator_Add_Mul #1",
    "memkv/store/stored_sessions.py:155 core/ReplaceComparisonOperator_LtE_Gt #1",
)


def test_pinned_mutants_are_still_killed_by_the_conformance_suite(tmp_path: Path) -> None:
    report = tmp_path / "mutation.json"
    root = Path(__file__).resolve().parents[2]
    only = [arg for name in PINNED for arg in ("--only", name)]
    done = subprocess.run([sys.executable, "-m", "tools.mutation", *only, "--floor", "1.0", "--report", str(report)],
                          cwd=root, capture_output=True, text=True, timeout=900)
    assert report.exists(), done.stderr[-3000:]  # a stale name is refused before anything runs
    summary = json.loads(report.read_text())
    assert summary["tested"] == len(PINNED), done.stderr[-3000:]
    assert done.returncode == 0 and summary["kill_rate"] == 1.0, (summary["survivors"], done.stderr[-2000:])


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
