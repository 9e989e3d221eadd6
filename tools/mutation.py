"""Mutation testing of the reference implementation with the conformance suite as the test.

cosmic-ray mutates memkv/store/ and the file backend one mutant at a time and runs the
conformance suite against the file backend (`memkv conformance --target file://`); a mutant the
suite fails is killed, and the requirement IDs the suite printed as FAIL say which requirement
killed it. Everything happens in a copy of the tracked tree (cosmic-ray edits files in place).

    python -m tools.mutation --sample 6 --floor 0.8          # CI: a fixed-seed sample of mutants
    python -m tools.mutation --report out/mutation.json      # the full campaign (hours)

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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# stream_ops.py is the server's streamed path, which the file backend never takes: mutate it with
# `--module memkv/store/stream_ops.py --target memkv-serve`.
MUTATED = ["memkv/store/allocator.py", "memkv/store/core.py", "memkv/store/engine.py", "memkv/store/index.py",
           "memkv/store/session_ops.py", "memkv/store/superblock.py", "memkv/store/embedded.py"]
SAMPLE_SEED = 7
FAIL_LINE = re.compile(r"^\s+(?:FAIL|ERROR) (MKV-[A-Z]+-\d+)", re.MULTILINE)


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
    test = (f"{sys.executable} -m memkv.cli.conformance conformance --target {target} --seed {seed} "
            f"--examples 5 --steps 15 --quiet --max-shrink-time 5")
    config = dest / "cosmic-ray.toml"
    config.write_text("[cosmic-ray]\n"
                      f"module-path = {json.dumps(modules)}\n"
                      f"timeout = {timeout}\n"
                      "excluded-modules = []\n"
                      f"test-command = {json.dumps(test)}\n\n"
                      "[cosmic-ray.distributor]\n"
                      'name = "local"\n')
    return config


def keep_sample(session: Path, size: int, seed: int) -> int:
    """Mark every work item outside a fixed-seed sample of `size` as skipped; returns the total."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(session), WorkDB.Mode.open) as db:
        def where(item: Any) -> tuple[str, int, int, str, int]:
            m = item.mutations[0]  # job ids are random per init: sample by the mutation itself
            return str(m.module_path), m.start_pos[0], m.start_pos[1], m.operator_name, m.occurrence

        items = sorted(db.pending_work_items, key=where)
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
            mutation = items[job_id].mutations[0]
            where = f"{mutation.module_path}:{mutation.start_pos[0]} {mutation.operator_name} #{mutation.occurrence}"
            if result.test_outcome is TestOutcome.SURVIVED:
                survivors.append({"mutant": where, "diff": result.diff or ""})
                continue
            killed += 1
            output = result.output or ""
            reqs = (["target unusable (every check errors)"] if "cannot reach target" in output else
                    sorted(set(FAIL_LINE.findall(output))) or
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
    parser.add_argument("--module", action="append", default=None, help="module to mutate (default: store + file)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="memkv-mutation-") as tmp:
        work = Path(tmp)
        copy_tree(work)
        config = write_config(work, args.module or MUTATED, args.target, args.seed, args.timeout)
        session = work / "session.sqlite"
        cosmic = [sys.executable, "-m", "cosmic_ray.cli"]
        subprocess.run([*cosmic, "init", str(config), str(session)], cwd=work, check=True)
        from cosmic_ray.work_db import WorkDB, use_db

        with use_db(str(session), WorkDB.Mode.open) as db:
            total = db.num_work_items
        equivalent = skip_equivalent(session, work)
        if args.sample:
            keep_sample(session, args.sample, args.sample_seed)
        subprocess.run([*cosmic, "exec", str(config), str(session)], cwd=work, check=True)
        summary = summarise(session, total) | {"equivalent_skipped": equivalent}
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
