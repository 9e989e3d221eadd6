"""Mutation testing of the reference implementation with the conformance suite as the test.

cosmic-ray mutates the modules of tools/mutation_scope.toml (memkv/store/ and the file backend)
one mutant at a time and runs the conformance checks against the file backend, stopping at the
first failing check; a mutant the suite fails is killed, and the requirement ID of that failure
says which requirement killed it. Everything happens in a copy of the tracked tree (cosmic-ray
edits files in place).

    python -m tools.mutation --sample 6 --floor 0.8          # CI: a fixed-seed sample of mutants
    python -m tools.mutation --report out/mutation.json      # the full campaign (hours)
    python -m tools.mutation --only 'memkv/store/protection.py:55 core/ReplaceComparisonOperator_LtE_Lt #1'

The report gives the kill rate, kills per requirement and every surviving mutant with its diff.
"""

from __future__ import annotations

import argparse
import ast
import collections
import importlib.util
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCOPE = Path(__file__).resolve().with_name("mutation_scope.toml")
SAMPLE_SEED = 7
FAILED_REQUIREMENT = re.compile(r"\[(MKV-[A-Z]+-\d+)\]")


def scope(path: Path = SCOPE) -> list[str]:
    """The modules to mutate (tools/mutation_scope.toml), each checked to exist."""
    modules = list(tomllib.loads(path.read_text())["modules"])
    missing = [m for m in modules if not (ROOT / m).is_file()]
    if missing:
        raise SystemExit(f"{path.name} names modules that do not exist: {missing}; update it after moving modules")
    return modules


def checks_package() -> str:
    """The conformance checks' package (it moves into memkv/ with the restructure)."""
    for name in ("memkv.conformance.checks", "conformance.checks"):
        if importlib.util.find_spec(name.rsplit(".", 1)[0]) is not None:
            return name
    raise SystemExit("no conformance checks package found")


def copy_tree(dest: Path) -> None:
    """The tracked files and the built extension, where cosmic-ray may edit them."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for name in files.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    spec = importlib.util.find_spec("memkv.store._uring")
    if spec is not None and spec.origin:
        shutil.copy2(spec.origin, dest / "memkv" / "store" / Path(spec.origin).name)


def write_config(dest: Path, modules: list[str], target: str, seed: int, timeout: float) -> Path:
    # pytest -x: a killed mutant costs the checks up to the first failure, not the whole suite
    test = (f"{sys.executable} -m pytest --pyargs {checks_package()} -x -q -p no:cacheprovider -p no:randomly "
            f"--memkv-target {target} --memkv-seed {seed} --memkv-examples 5 --memkv-steps 15 "
            f"--memkv-max-shrink-time 5")
    config = dest / "cosmic-ray.toml"
    config.write_text("[cosmic-ray]\n"
                      f"module-path = {json.dumps(modules)}\n"
                      f"timeout = {timeout}\n"
                      "excluded-modules = []\n"
                      f"test-command = {json.dumps(test)}\n\n"
                      "[cosmic-ray.distributor]\n"
                      'name = "local"\n')
    return config


def name_of(item: Any) -> str:
    """How the report names a mutant: `module:line operator #occurrence`."""
    m = item.mutations[0]
    return f"{m.module_path}:{m.start_pos[0]} {m.operator_name} #{m.occurrence}"


def keep_sample(session: Path, size: int, seed: int, only: list[str] | None = None) -> int:
    """Mark every work item outside a fixed-seed sample of `size` (or outside the mutants named in
    `only`) as skipped; returns the total."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(session), WorkDB.Mode.open) as db:
        def where(item: Any) -> tuple[str, int, int, str, int]:
            m = item.mutations[0]  # job ids are random per init: sample by the mutation itself
            return str(m.module_path), m.start_pos[0], m.start_pos[1], m.operator_name, m.occurrence

        items = sorted(db.pending_work_items, key=where)
        if only is not None:
            keep = {item.job_id for item in items if name_of(item) in only}
            unknown = set(only) - {name_of(item) for item in items}
            if unknown:
                raise SystemExit(f"no such mutants: {sorted(unknown)}")
        else:
            keep = {item.job_id for item in random.Random(seed).sample(items, min(size, len(items)))}
        for item in items:
            if item.job_id not in keep:
                db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
        return len(items)


def annotation_lines(path: Path) -> set[int]:
    """Lines holding type annotations: every module here has `from __future__ import annotations`,
    so annotations are never evaluated and a mutant inside one is equivalent."""
    tree = ast.parse(path.read_text())
    if not any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
               any(a.name == "annotations" for a in n.names) for n in tree.body):
        return set()
    nodes: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            nodes.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            nodes.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            nodes.append(node.annotation)
    return {line for n in nodes for line in range(n.lineno, (n.end_lineno or n.lineno) + 1)}


def skip_equivalent(session: Path, root: Path) -> int:
    """Mark mutants inside type annotations as skipped (equivalent); returns how many."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    lines: dict[str, set[int]] = {}
    skipped = 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in db.work_items:
            mutation = item.mutations[0]
            module = str(mutation.module_path)
            if module not in lines:
                lines[module] = annotation_lines(root / module)
            if mutation.start_pos[0] in lines[module]:
                db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED,
                                                      output="equivalent: inside a type annotation"))
                skipped += 1
    return skipped


def summarise(session: Path, total: int) -> dict[str, Any]:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    killed_by: collections.Counter[str] = collections.Counter()
    survivors, kills, killed, tested = [], [], 0, 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        items = {item.job_id: item for item in db.work_items}
        for job_id, result in db.results:
            if result.worker_outcome is WorkerOutcome.SKIPPED:
                continue
            tested += 1
            where = name_of(items[job_id])
            if result.test_outcome is TestOutcome.SURVIVED:
                survivors.append({"mutant": where, "diff": result.diff or ""})
                continue
            killed += 1
            output = result.output or ""
            reqs = (sorted(set(FAILED_REQUIREMENT.findall(output))) or
                    (["target unusable (no check ran)"] if " passed" not in output and " failed" not in output
                     else []) or
                    ["timeout" if result.test_outcome is None else "other (no requirement printed)"])
            killed_by.update(reqs)
            kills.append({"mutant": where, "by": reqs, "output": (result.output or "")[-600:]})
    return {"mutants": total, "tested": tested, "killed": killed, "survived": len(survivors),
            "kill_rate": round(killed / tested, 4) if tested else None,
            "killed_by_requirement": dict(sorted(killed_by.items())), "survivors": survivors,
            "killed_mutants": kills}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.mutation", description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=0, help="test only this many mutants (fixed seed); 0 = all")
    parser.add_argument("--sample-seed", type=int, default=SAMPLE_SEED)
    parser.add_argument("--seed", type=int, default=20250501, help="seed of the conformance runs")
    parser.add_argument("--target", default="file://", help="conformance target of each run (default file://)")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per mutant before it counts killed")
    parser.add_argument("--floor", type=float, default=None, help="exit 1 when the kill rate is below this")
    parser.add_argument("--report", default=None, help="write the JSON summary here")
    parser.add_argument("--module", action="append", default=None,
                        help="module to mutate (default: tools/mutation_scope.toml)")
    parser.add_argument("--only", action="append", default=None,
                        help="test only this mutant, named as in the report ('module:line operator #n')")
    parser.add_argument("--session", default=None,
                        help="keep cosmic-ray's results database here (summarise it while it runs)")
    parser.add_argument("--summarise", metavar="SESSION", default=None,
                        help="only summarise the results database of a campaign (finished or not)")
    args = parser.parse_args(argv)
    if args.summarise:
        return finish(args, summarise(Path(args.summarise), total_of(Path(args.summarise))))
    with tempfile.TemporaryDirectory(prefix="memkv-mutation-") as tmp:
        work = Path(tmp)
        copy_tree(work)
        config = write_config(work, args.module or scope(), args.target, args.seed, args.timeout)
        session = Path(args.session).resolve() if args.session else work / "session.sqlite"
        cosmic = [sys.executable, "-m", "cosmic_ray.cli"]
        subprocess.run([*cosmic, "init", str(config), str(session)], cwd=work, check=True)
        total = total_of(session)
        equivalent = skip_equivalent(session, work)
        if args.sample or args.only:
            keep_sample(session, args.sample, args.sample_seed, args.only)
        subprocess.run([*cosmic, "exec", str(config), str(session)], cwd=work, check=True)
        summary = summarise(session, total) | {"equivalent_skipped": equivalent}
    return finish(args, summary)


def total_of(session: Path) -> int:
    from cosmic_ray.work_db import WorkDB, use_db

    with use_db(str(session), WorkDB.Mode.open) as db:
        return int(db.num_work_items)


def finish(args: argparse.Namespace, summary: dict[str, Any]) -> int:
    text = json.dumps(summary, indent=2)
    if args.report:
        Path(args.report).write_text(text + "\n")
    print(text)
    if args.floor is not None and (summary["kill_rate"] or 0.0) < args.floor:
        print(f"mutation kill rate {summary['kill_rate']} is below the floor {args.floor}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
