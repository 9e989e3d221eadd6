"""The test command of one mutant (tools/mutation.py): only the conformance checks that execute the mutated line.

cosmic-ray writes the mutant into the module in place and runs this command; it finds the changed
statement by comparing every mutated module with its pristine copy, looks up in the coverage map
(tools/mutation_coverage.py) the checks that executed that statement on the unmutated code, and
runs them with the same options as a whole run, fastest first, stopping at the first failure. A
check that never executes the mutated statement behaves the same with and without the mutant, so
leaving it out cannot turn a kill into a survival; killed still means "a conformance check
failed" (or the run timed out). A statement executed outside any check (at import, collection or
the target's start) selects every check. When the selection cannot be made (no change found, the
map lacks the module, or pytest refuses the node ids) the whole run is made instead.

    python -m tools.mutation_select MAP_JSON
"""

from __future__ import annotations

import ast
import difflib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

OUTSIDE = ""
NOT_FOUND, NO_TESTS = 4, 5  # pytest's exit codes for unknown node ids and an empty selection


def changed_lines(pristine: str, mutated: str) -> list[int]:
    """Line numbers (1-based, of the pristine text) that the mutant changed."""
    lines: list[int] = []
    matcher = difflib.SequenceMatcher(a=pristine.splitlines(), b=mutated.splitlines(), autojunk=False)
    for tag, i1, i2, _j1, _j2 in matcher.get_opcodes():
        if tag != "equal":
            lines.extend(range(i1 + 1, max(i2, i1 + 1) + 1))
    return lines


def statement_lines(source: str, line: int) -> range:
    """The lines of the innermost statement holding `line` (the header only, for a compound one):
    coverage records a statement under any of its lines."""
    holding = [node for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.stmt) and node.lineno <= line <= (node.end_lineno or node.lineno)]
    if not holding:
        return range(line, line + 1)
    best = max(holding, key=lambda node: (node.lineno, -(node.end_lineno or node.lineno)))  # the innermost
    end = best.end_lineno or best.lineno
    body = getattr(best, "body", None)
    if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
        first = body[0].lineno
        if hasattr(body[0], "decorator_list") and body[0].decorator_list:
            first = min(first, *(d.lineno for d in body[0].decorator_list))
        if best.lineno <= line < first:
            end = first - 1
    return range(best.lineno, end + 1)


def selection(plan: dict[str, Any], root: Path) -> tuple[str, list[str] | None]:
    """(what was mutated, the checks to run in order); None means every check."""
    pristine_dir = Path(plan["pristine"])
    for module, by_line in plan["lines"].items():
        before = (pristine_dir / module).read_text()
        after = (root / module).read_text()
        if before == after:
            continue
        lines = changed_lines(before, after)
        statements = {n for line in lines for n in statement_lines(before, line)}
        where = f"{module}:{min(lines)}"
        checks: set[str] = set()
        for n in statements:
            checks.update(by_line.get(str(n), ()))
        if OUTSIDE in checks:
            return f"{where} (executed outside any check)", None
        order = {name: i for i, name in enumerate(plan["order"])}
        return where, sorted(checks, key=lambda name: (plan["durations"].get(name, 0.0), order.get(name, 0)))
    for module in plan["modules"]:
        if module not in plan["lines"] and (pristine_dir / module).read_text() != (root / module).read_text():
            return f"{module} (never executed by any check)", []
    return "no change found", None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    plan = json.loads(Path(args[0]).read_text())
    root = Path.cwd()
    try:
        where, checks = selection(plan, root)
    except Exception as exc:  # the selector's own failure must never count as a kill
        where, checks = f"unknown ({type(exc).__name__}: {exc})", None
    command = [sys.executable, "-m", "pytest", *plan["pytest_args"]]
    if checks == []:
        print(f"mutant at {where}: no conformance check executes it; survived without a run", flush=True)
        return 0
    if checks is None:
        print(f"mutant at {where}: every check", flush=True)
        checks = sorted(plan["order"], key=lambda name: plan["durations"].get(name, 0.0))
    else:
        print(f"mutant at {where}: {len(checks)} of {len(plan['order'])} checks execute it", flush=True)
    rc = subprocess.run([*command, *checks]).returncode
    if rc not in (NOT_FOUND, NO_TESTS):
        return rc
    print(f"pytest refused the selection (exit {rc}): the whole run in collection order instead", flush=True)
    return subprocess.run([*command, "--pyargs", plan["package"]]).returncode


if __name__ == "__main__":
    raise SystemExit(main())
