"""The per-mutant test selection of tools/mutation.py (tools/mutation_select.py): which statement a
mutant changed, and which checks a plan selects for it."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


select = _tool("mutation_select")

SOURCE = """\
def f(a, b=3):
    if (a >
            b):
        return a // 2
    total = (a +
             b)
    return total
"""


def test_changed_lines_are_those_of_the_pristine_text() -> None:
    mutated = SOURCE.replace("a // 2", "a % 2")
    assert select.changed_lines(SOURCE, mutated) == [4]
    assert select.changed_lines(SOURCE, SOURCE) == []


def test_a_mutated_line_stands_for_its_whole_statement_or_header() -> None:
    assert list(select.statement_lines(SOURCE, 3)) == [2, 3]  # the `if` header, not its body
    assert list(select.statement_lines(SOURCE, 6)) == [5, 6]
    assert list(select.statement_lines(SOURCE, 4)) == [4]
    assert list(select.statement_lines(SOURCE, 1)) == [1]  # a default value: the `def` line


def _plan(tmp_path: Path, lines: dict[str, list[str]]) -> tuple[dict[str, object], Path]:
    pristine, work = tmp_path / "pristine", tmp_path / "work"
    for root in (pristine, work):
        (root / "pkg").mkdir(parents=True)
        (root / "pkg" / "m.py").write_text(SOURCE)
    (work / "pkg" / "other.py").write_text("X = 1\n")
    (pristine / "pkg" / "other.py").write_text("X = 1\n")
    plan = {"pristine": str(pristine), "modules": ["pkg/m.py", "pkg/other.py"], "order": ["slow", "fast", "idle"],
            "durations": {"slow": 5.0, "fast": 0.5, "idle": 0.1}, "lines": {"pkg/m.py": lines}}
    return json.loads(json.dumps(plan)), work


def test_only_the_checks_that_ran_the_statement_are_selected_fastest_first(tmp_path: Path) -> None:
    plan, work = _plan(tmp_path, {"5": ["slow"], "6": ["fast"], "4": ["idle"]})
    (work / "pkg" / "m.py").write_text(SOURCE.replace("             b)", "             -b)"))
    where, checks = select.selection(plan, work)
    assert where == "pkg/m.py:6" and checks == ["fast", "slow"]


def test_a_statement_run_outside_any_check_selects_every_check(tmp_path: Path) -> None:
    plan, work = _plan(tmp_path, {"1": [""], "4": ["slow"]})
    (work / "pkg" / "m.py").write_text(SOURCE.replace("b=3", "b=4"))
    assert select.selection(plan, work)[1] is None


def test_a_statement_no_check_ran_selects_nothing(tmp_path: Path) -> None:
    plan, work = _plan(tmp_path, {"4": ["slow"]})
    (work / "pkg" / "m.py").write_text(SOURCE.replace("return total", "return None"))
    assert select.selection(plan, work)[1] == []
    (work / "pkg" / "m.py").write_text(SOURCE)
    (work / "pkg" / "other.py").write_text("X = 2\n")  # a module no check ever imported
    assert select.selection(plan, work)[1] == []


def test_no_change_found_means_every_check(tmp_path: Path) -> None:
    plan, work = _plan(tmp_path, {"4": ["slow"]})
    assert select.selection(plan, work) == ("no change found", None)


mutation = _tool("mutation")


def test_survivors_are_explained_by_code_not_by_line_number() -> None:
    entries = mutation.explanations()  # refuses an entry without a known verdict and a reason
    assert entries and {e["verdict"] for e in entries} <= set(mutation.VERDICTS)
    diff = ("--- a/memkv/store/index.py\n+++ b/memkv/store/index.py\n@@ -1,3 +1,3 @@\n"
            "-        return None if row is None else str(row[0])\n"
            "+        return None if row is None else str(row[ -1])\n")
    assert mutation.changed(diff) == ("return None if row is None else str(row[0])",
                                      "return None if row is None else str(row[ -1])")
    for line in (127, 500):  # wherever the line moves
        entry = mutation.explain(f"memkv/store/index.py:{line} core/NumberReplacer #23", diff, entries)
        assert entry is not None and entry["verdict"] == "equivalent"
    assert mutation.explain("memkv/store/engine.py:127 core/NumberReplacer #23", diff, entries) is None


def test_a_session_keeps_the_target_its_mutants_were_tested_against(tmp_path: Path) -> None:
    import sqlite3

    session = tmp_path / "s.sqlite"
    sqlite3.connect(session).close()  # a session of an older version of the tool: no target recorded
    assert mutation.recorded_target(session) == mutation.UNRECORDED
    mutation.record_target(session, "file://")
    mutation.record_target(session, "memkv-serve")  # the last one recorded is the session's
    assert mutation.recorded_target(session) == "memkv-serve"


def test_the_second_target_runs_every_check_or_the_named_modules() -> None:
    options = mutation.pytest_args("memkv-serve", 1)
    package = mutation.checks_package()
    assert mutation.whole_run(options).endswith(f"--pyargs {package}")
    named = mutation.whole_run(options, ["test_wire", "test_quotas"])
    assert named.endswith(f"--pyargs {package}.test_wire {package}.test_quotas")
    assert "--memkv-target memkv-serve" in named


def test_second_target_kills_are_refused_when_the_killing_check_fails_unmutated(tmp_path: Path) -> None:
    import pytest

    mutation.check_unmutated(tmp_path, [], None, [])  # no kill: nothing to check, nothing run
    (tmp_path / "test_broken.py").write_text("def test_fails_anyway() -> None:\n    assert False\n")
    kill = {"output": "FAILED test_broken.py::test_fails_anyway - assert False\n1 failed in 0.01s\n"}
    with pytest.raises(SystemExit, match="fail on the unmutated tree too"):
        mutation.check_unmutated(tmp_path, ["-q", "-p", "no:cacheprovider"], None, [kill])



def _passes(*argv: str) -> list[object]:
    parser = mutation.argparse.ArgumentParser()
    parser.add_argument("--second-target", default=None)
    parser.add_argument("--second-checks", action="append", default=None)
    parser.add_argument("--pass", dest="passes", action="append", nargs="+", default=None)
    passes: list[object] = mutation.further_passes(parser.parse_args(argv))
    return passes


def test_further_passes_follow_the_second_target_in_order_and_name_memkv_backends(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from memkv.conformance import per_backend

    strict = per_backend.Backend("strict", "memkv-serve?scheme=x", {"MEMKV_TRANSPORT": "x"})
    monkeypatch.setitem(per_backend.BACKENDS, "strict", strict)
    passes = _passes("--second-target", "memkv-serve", "--second-checks", "test_wire", "--pass", "strict",
                     "test_blocks", "--pass", "file:///tmp/x")
    assert passes == [mutation.FurtherPass("memkv-serve", ["test_wire"]),
                      mutation.FurtherPass("memkv-serve?scheme=x", ["test_blocks"], {"MEMKV_TRANSPORT": "x"},
                                           "strict (memkv-serve?scheme=x)"),
                      mutation.FurtherPass("file:///tmp/x", None)]
    assert _passes() == []


def test_a_pass_on_a_backend_that_cannot_run_here_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from memkv.conformance import per_backend

    absent = per_backend.Backend("absent", "memkv-serve", {}, lambda: "NIXL unavailable: no module named nixl")
    monkeypatch.setitem(per_backend.BACKENDS, "absent", absent)
    with pytest.raises(SystemExit, match="cannot run here: NIXL unavailable"):
        _passes("--pass", "absent", "test_blocks")


def test_a_pass_sets_its_environment_only_while_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UCX_TLS", "rc")
    monkeypatch.delenv("MEMKV_TRANSPORT", raising=False)
    further = mutation.FurtherPass("t", None, {"UCX_TLS": "tcp", "MEMKV_TRANSPORT": "nixl"})
    with further.environment():
        assert (os.environ["UCX_TLS"], os.environ["MEMKV_TRANSPORT"]) == ("tcp", "nixl")
    assert os.environ["UCX_TLS"] == "rc" and "MEMKV_TRANSPORT" not in os.environ
