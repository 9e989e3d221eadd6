"""Mutation testing of the reference implementation with the conformance suite as the test.

cosmic-ray mutates the modules of tools/mutation_scope.toml (memkv/store/ and the file backend)
one mutant at a time in a copy of the tracked tree. The checks first run once, unmutated, under
coverage (tools/mutation_coverage.py); each mutant then runs only the checks that execute the
statement it changed, fastest first, stopping at the first failure (tools/mutation_select.py;
--whole-run runs every check instead). A mutant is killed when a check fails or the run times
out; the requirement ID of the failure says which requirement killed it. With --second-target, the
survivors of that first pass that no check executed (--second-for survivors: every survivor not
explained as equivalent) are tested again against a second target (memkv-serve: the server, started
from the same tree, takes the streamed put and get, quotas and CHILDREN that the file target never
takes), with the checks of --second-checks (default: every check) and no selection by coverage; the
report names, per kill, the target whose checks killed it. --pass TARGET [CHECKS...] adds further passes
in order (after the second target's, if any): each tests the survivors of the passes before it. TARGET
may name one of memkv's backends (file, tcp, nixl: its target, with the environment its checks need and
a refusal to run where it cannot, e.g. NIXL not importable).

    python -m tools.mutation --sample 40 --stratified                 # a fixed-seed sample, every module
    python -m tools.mutation --shard 0/2 --session a.sqlite           # half of the full campaign (one worker)
    python -m tools.mutation --summarise a.sqlite b.sqlite            # the campaign so far
    python -m tools.mutation --target memkv-serve --whole-run --unexecuted-in a.sqlite b.sqlite
    python -m tools.mutation --sample 24 --stratified --second-target memkv-serve --second-checks test_wire
    python -m tools.mutation --sample 24 --stratified --pass tcp test_wire --pass nixl test_blocks
    python -m tools.mutation --only 'memkv/store/protection.py:55 core/ReplaceComparisonOperator_LtE_Lt #1'

The report gives the kill rate, the score (killed / (tested - survivors explained as equivalent in
tools/mutation_survivors.toml)), kills per requirement and every survivor with its diff and verdict.
"""

from __future__ import annotations

import argparse
import ast
import collections
import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
SCOPE = Path(__file__).resolve().with_name("mutation_scope.toml")
SAMPLE_SEED = 7
EXPLAINED = Path(__file__).resolve().with_name("mutation_survivors.toml")
VERDICTS = ("equivalent", "unreachable", "gap")
NOT_EXECUTED = "no conformance check executes it"
TIMEOUT = "timeout"  # cosmic-ray's whole output of a test command it stopped at the per-mutant timeout
UNRECORDED = "not recorded"  # the target of a session written before sessions recorded theirs
FAILED_REQUIREMENT = re.compile(r"\[(MKV-[A-Z]+-\d+)\]")
FAILED_CHECK = re.compile(r"^(?:FAILED|ERROR) (\S+::\S+)", re.MULTILINE)  # pytest's short summary lines


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


# pytest plugins installed beside the suite that its checks never use: loading them costs seconds per mutant
UNUSED_PLUGINS = ("-p", "no:schemathesis", "-p", "no:benchmark", "-p", "no:anyio")


def pytest_args(target: str, seed: int) -> list[str]:
    """The options of every run of the checks; -x: a killed mutant costs the checks up to the first failure."""
    return ["-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *UNUSED_PLUGINS, "--memkv-target", target,
            "--memkv-seed", str(seed), "--memkv-examples", "5", "--memkv-steps", "15", "--memkv-max-shrink-time", "5"]


def build_plan(work: Path, modules: list[str], args: list[str], plan_file: Path) -> dict[str, Any]:
    """Run the checks once on the unmutated copy under coverage (tools/mutation_coverage.py) and write
    the plan tools/mutation_select.py reads: which checks execute each line, their durations and order,
    and pristine copies of the modules to find what a mutant changed."""
    from tools.mutation_coverage import (
        CHECK_ENV,
        DATA_ENV,
        DURATIONS_ENV,
        INCLUDE_ENV,
        OUTSIDE,
        line_map,
        write_startup,
    )

    folder = plan_file.parent
    folder.mkdir(parents=True, exist_ok=True)
    write_startup(folder / "startup")
    durations = folder / "durations.json"
    for old in [*folder.glob("coverage*"), folder / "durations.json"]:
        old.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=str(folder / "startup"), **{
        DATA_ENV: str(folder / "coverage"), CHECK_ENV: OUTSIDE, DURATIONS_ENV: str(durations),
        INCLUDE_ENV: os.pathsep.join(str(work / m) for m in modules)})
    measure = [a for a in args if a != "-x"]  # every check runs, whatever fails
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", *measure, "-p", "tools.mutation_coverage",
                           "--pyargs", checks_package()], cwd=work, env=env)
    if not durations.is_file():
        raise SystemExit(f"the measuring run of the checks did not finish (exit {done.returncode})")
    timings = json.loads(durations.read_text())
    pristine = folder / "pristine"
    for module in modules:
        (pristine / module).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(work / module, pristine / module)
    plan = {"modules": modules, "pristine": str(pristine), "pytest_args": args, "package": checks_package(),
            "order": list(timings), "durations": timings, "lines": line_map(folder / "coverage", work),
            "measured_in_s": round(time.monotonic() - started, 1), "unmutated_exit": done.returncode}
    plan_file.write_text(json.dumps(plan))
    print(f"coverage plan: {len(timings)} checks in {plan['measured_in_s']} s (exit {done.returncode})",
          file=sys.stderr)
    return plan


def plan_matches(plan_file: Path, modules: list[str]) -> bool:
    """A saved plan still describes these modules (same list, same text)."""
    if not plan_file.is_file():
        return False
    plan = json.loads(plan_file.read_text())
    pristine = Path(plan["pristine"])
    return bool(plan["modules"] == modules and all(
        (pristine / m).is_file() and (pristine / m).read_text() == (ROOT / m).read_text() for m in modules))


def write_config(dest: Path, modules: list[str], test: str, timeout: float) -> Path:
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


def _draw_key(item: Any, seed: int, lines: dict[str, list[str]]) -> bytes:
    """A mutant's place in the draw, from what it changes (the module, the text of its line, the operator,
    the occurrence) and not from its line number, so that editing other lines of a module keeps it."""
    m = item.mutations[0]
    module = str(m.module_path)
    if module not in lines:
        lines[module] = (ROOT / module).read_text().splitlines() if (ROOT / module).is_file() else []
    text = lines[module][m.start_pos[0] - 1].strip() if 0 < m.start_pos[0] <= len(lines[module]) else ""
    return hashlib.sha256(f"{seed}|{module}|{text}|{m.operator_name}|{m.occurrence}".encode()).digest()


def drawn(items: list[Any], size: int, seed: int, stratified: bool) -> list[Any]:
    """A fixed-seed sample of `size` work items: those whose draw key (`_draw_key`) is smallest, so the
    sample stays put when unrelated lines change; stratified: the same share of every module's mutants
    (at least one of each), so that no module is left out of a small campaign."""
    lines: dict[str, list[str]] = {}
    ranked = sorted(items, key=lambda item: _draw_key(item, seed, lines))
    if not stratified:
        return ranked[:size]
    by_module: dict[str, list[Any]] = collections.defaultdict(list)
    for item in ranked:
        by_module[str(item.mutations[0].module_path)].append(item)
    share = min(1.0, size / len(items)) if items else 0.0
    return [item for module in sorted(by_module)
            for item in by_module[module][:max(1, round(share * len(by_module[module])))]]


def keep_sample(session: Path, size: int, seed: int, only: list[str] | None = None, stratified: bool = False,
                shard: tuple[int, int] = (0, 1)) -> int:
    """Mark as skipped every work item outside the mutants named in `only` and a fixed-seed sample of
    `size` (all of them when neither is given), and outside this shard (every n-th kept item from the
    k-th); returns the total."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(session), WorkDB.Mode.open) as db:
        def where(item: Any) -> tuple[str, int, int, str, int]:
            m = item.mutations[0]  # job ids are random per init: sample by the mutation itself
            return str(m.module_path), m.start_pos[0], m.start_pos[1], m.operator_name, m.occurrence

        items = sorted(db.pending_work_items, key=where)
        kept = items if not size and only is None else []
        if only is not None:
            kept = [item for item in items if name_of(item) in only]
            unknown = set(only) - {name_of(item) for item in items}
            if unknown:
                raise SystemExit(f"no such mutants: {sorted(unknown)}")
        if size:  # with --only as well: the named mutants and the sample
            chosen = {item.job_id for item in kept} | {item.job_id for item in drawn(items, size, seed, stratified)}
            kept = [item for item in items if item.job_id in chosen]
        index, count = shard
        keep = {item.job_id for item in kept[index::count]}
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


def changed(diff: str) -> tuple[str, str]:
    """The source line a mutant removed and the one it added, stripped (how survivors are explained:
    by the code, not by line numbers that every edit moves)."""
    removed = [line[1:].strip() for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return " / ".join(removed), " / ".join(added)


def explanations(path: Path = EXPLAINED) -> list[dict[str, str]]:
    """Survivors explained in tools/mutation_survivors.toml: module, before, after, verdict, reason."""
    entries = list(tomllib.loads(path.read_text()).get("survivor", []))
    for entry in entries:
        if entry["verdict"] not in VERDICTS or not entry["reason"].strip():
            raise SystemExit(f"{path.name}: verdict must be one of {VERDICTS} with a reason: {entry}")
    return entries


def explain(mutant: str, diff: str, entries: list[dict[str, str]]) -> dict[str, str] | None:
    module = mutant.split(":", 1)[0]
    before, after = changed(diff)
    for entry in entries:
        if entry["module"] == module and entry["before"] == before and entry["after"] == after:
            return entry
    return None


def record_target(session: Path, target: str) -> None:
    """Keep in the results database the conformance target its mutants were tested against."""
    with contextlib.closing(sqlite3.connect(session)) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS memkv_target (target TEXT NOT NULL)")
        db.execute("DELETE FROM memkv_target")
        db.execute("INSERT INTO memkv_target VALUES (?)", (target,))


def recorded_target(session: Path) -> str:
    with contextlib.closing(sqlite3.connect(session)) as db:
        try:
            row = db.execute("SELECT target FROM memkv_target").fetchone()
        except sqlite3.OperationalError:  # a session of an older version of this tool
            return UNRECORDED
    return str(row[0]) if row else UNRECORDED


def summarise(sessions: list[Path], total: int) -> dict[str, Any]:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    entries = explanations()
    latest: dict[str, Any] = {}  # a mutant tested again (another shard, a second target) counts once: the last result
    target_of: dict[str, str] = {}
    tried: dict[str, list[str]] = collections.defaultdict(list)
    for session in sessions:
        target = recorded_target(session)
        with use_db(str(session), WorkDB.Mode.open) as db:
            items = {item.job_id: item for item in db.work_items}
            for job_id, result in db.results:
                if result.worker_outcome is not WorkerOutcome.SKIPPED:
                    name = name_of(items[job_id])
                    latest[name], target_of[name] = result, target
                    if target not in tried[name]:
                        tried[name].append(target)
    killed_by: collections.Counter[str] = collections.Counter()
    killed_on: collections.Counter[str] = collections.Counter()
    verdicts: collections.Counter[str] = collections.Counter()
    per_module: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    survivors, kills, killed, tested = [], [], 0, 0
    for where, result in sorted(latest.items()):
        tested += 1
        module = where.split(":", 1)[0]
        output = result.output or ""
        if result.test_outcome is TestOutcome.SURVIVED:
            entry = explain(where, result.diff or "", entries)
            verdict = entry["verdict"] if entry else "unexplained"
            verdicts[verdict] += 1
            per_module[module][verdict] += 1
            survivors.append({"mutant": where, "executed_by_a_check": NOT_EXECUTED not in output,
                              "verdict": verdict, "reason": entry["reason"] if entry else "",
                              "targets": tried[where], "diff": result.diff or ""})
            continue
        killed += 1
        per_module[module]["killed"] += 1
        reqs = (sorted(set(FAILED_REQUIREMENT.findall(output))) or
                ([TIMEOUT] if output.strip() == TIMEOUT or result.test_outcome is None else []) or
                (["target unusable (no check ran)"] if " passed" not in output and " failed" not in output
                 else []) or
                ["other (no requirement printed)"])
        killed_by.update(reqs)
        killed_on[target_of[where]] += 1
        kills.append({"mutant": where, "target": target_of[where], "by": reqs, "targets": tried[where],
                      "output": output[-600:]})
    equivalent = verdicts["equivalent"]
    return {"mutants": total, "tested": tested, "killed": killed, "survived": len(survivors),
            "killed_by_target": dict(sorted(killed_on.items())),
            "kill_rate": round(killed / tested, 4) if tested else None,
            "score": round(killed / (tested - equivalent), 4) if tested > equivalent else None,
            "score_definition": "killed (against any target tried) / (tested - survivors explained as equivalent "
                                "in tools/mutation_survivors.toml); mutants inside type annotations are not tested",
            "survivor_verdicts": dict(sorted(verdicts.items())),
            "per_module": {m: dict(sorted(c.items())) for m, c in sorted(per_module.items())},
            "killed_by_requirement": dict(sorted(killed_by.items())), "survivors": survivors,
            "killed_mutants": kills}


@contextlib.contextmanager
def scratch_tmpdir() -> Iterator[Path]:
    """TMPDIR of every child process, removed at the end: a mutant that breaks a store's close, or a
    run stopped at its timeout, leaves its temporary stores (256 MiB each) there, not in /tmp."""
    saved = os.environ.get("TMPDIR")
    with tempfile.TemporaryDirectory(prefix="memkv-mutation-tmp-") as scratch:
        os.environ["TMPDIR"] = scratch
        try:
            yield Path(scratch)
        finally:
            if saved is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = saved


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
    parser.add_argument("--summarise", metavar="SESSION", nargs="+", default=None,
                        help="only summarise the results databases of a campaign (finished or not; several shards)")
    parser.add_argument("--stratified", action="store_true",
                        help="with --sample: the same share of every module's mutants")
    parser.add_argument("--shard", default="0/1", metavar="K/N",
                        help="test only every N-th sampled mutant from the K-th (several workers, one each)")
    parser.add_argument("--plan", default=None,
                        help="keep the coverage plan here and reuse it while the modules are unchanged")
    parser.add_argument("--unexecuted-in", metavar="SESSION", nargs="+", default=None,
                        help="test only the survivors of these campaigns that no check executed (for a second "
                             "target: --target memkv-serve reaches the server's streamed path and quotas)")
    parser.add_argument("--whole-run", action="store_true",
                        help="run every check for every mutant (no selection by coverage)")
    parser.add_argument("--second-target", default=None, metavar="TARGET",
                        help="test survivors of this run again against TARGET (e.g. memkv-serve), without selection "
                             "by coverage; a kill there counts, and the report says which target killed each mutant")
    parser.add_argument("--second-for", choices=("unexecuted", "survivors"), default="unexecuted",
                        help="which survivors the second target (or the first --pass) tests: those no check "
                             "executed (default), or every survivor not explained as equivalent; each later pass "
                             "tests the survivors of the pass before it")
    parser.add_argument("--second-checks", action="append", default=None, metavar="MODULE",
                        help="run only this module of the checks package against the second target (e.g. "
                             "test_wire; repeat it); default: every check")
    parser.add_argument("--second-timeout", type=float, default=None,
                        help="seconds per mutant of the second and every further pass (default: --timeout)")
    parser.add_argument("--pass", dest="passes", action="append", nargs="+", default=None,
                        metavar=("TARGET", "CHECKS"),
                        help="a further pass, after the second target's (repeat it; in order): the survivors of the "
                             "passes before it (as --second-for says) are tested against TARGET with the check "
                             "modules named after it (default: every check). TARGET is a conformance target or one "
                             "of memkv's backends (file, tcp, nixl), which brings the environment its checks need "
                             "and stops the run where that backend cannot run (e.g. NIXL not importable)")
    args = parser.parse_args(argv)
    if args.summarise:
        sessions = [Path(name) for name in args.summarise]
        return finish(args, summarise(sessions, total_of(sessions[0])))
    index, count = (int(n) for n in args.shard.split("/"))
    passes = further_passes(args)
    if args.unexecuted_in:
        earlier = summarise([Path(name) for name in args.unexecuted_in], 0)
        args.only = [*(args.only or []), *(s["mutant"] for s in earlier["survivors"] if not s["executed_by_a_check"])]
    modules = args.module or scope()
    with tempfile.TemporaryDirectory(prefix="memkv-mutation-") as tmp, scratch_tmpdir():
        work = Path(tmp)
        copy_tree(work)
        options = pytest_args(args.target, args.seed)
        if args.whole_run:
            test = whole_run(options)
        else:
            plan_file = Path(args.plan).resolve() if args.plan else work / ".mutation" / "plan.json"
            if not plan_matches(plan_file, modules):
                build_plan(work, modules, options, plan_file)
            test = f"{sys.executable} -m tools.mutation_select {plan_file}"
        session = Path(args.session).resolve() if args.session else work / "session.sqlite"
        sessions, total, equivalent, started = [session], 0, 0, time.monotonic()

        def keep(db: Path) -> None:
            if args.sample or args.only or count > 1:
                keep_sample(db, args.sample, args.sample_seed, args.only, args.stratified, (index, count))

        total, equivalent = run_pass(work, modules, test, args.timeout, session, args.target, keep)
        exec_s = {"first": round(time.monotonic() - started, 1)}
        retry: list[str] | None = None  # the mutants the pass before tested (None: the first pass)
        for number, further in enumerate(passes, 2):
            # after the second pass, each tests what survived the one before it
            retry = [s["mutant"] for s in summarise(sessions, total)["survivors"] if s["verdict"] != "equivalent"
                     and (s["mutant"] in retry if retry is not None else
                          args.second_for == "survivors" or not s["executed_by_a_check"])]
            if not retry:
                break
            name = ORDINALS.get(number, f"pass{number}")
            later = session.with_name(f"{session.stem}-{name}{session.suffix}")
            started = time.monotonic()
            with further.environment():
                options = pytest_args(further.target, args.seed)
                run_pass(work, modules, whole_run(options, further.checks), args.second_timeout or args.timeout,
                         later, further.label or further.target,
                         functools.partial(keep_sample, size=0, seed=0, only=retry))
                sessions.append(later)
                exec_s[name] = round(time.monotonic() - started, 1)
                started = time.monotonic()
                kills = [k for k in summarise(sessions, total)["killed_mutants"] if k["mutant"] in retry]
                check_unmutated(work, options, further.checks, kills)
                exec_s[f"{name}_unmutated"] = round(time.monotonic() - started, 1)
        summary = summarise(sessions, total) | {"equivalent_skipped": equivalent, "exec_s": exec_s}
    return finish(args, summary)


ORDINALS = {2: "second", 3: "third", 4: "fourth"}  # how the report's exec_s names the passes after the first


class FurtherPass(NamedTuple):  # not a dataclass: the tests load this file without registering it as a module
    """A pass after the first: the target its checks run against, which check modules (None: every check),
    and the environment they need (None: none)."""

    target: str
    checks: list[str] | None = None
    env: dict[str, str] | None = None
    label: str | None = None
    """How the report names this pass's target (None: `target`); two backends may share a target and
    differ only by their environment (tcp and buffered)."""

    @contextlib.contextmanager
    def environment(self) -> Iterator[None]:
        """This pass's variables set for its runs (the tool's children inherit them), restored after."""
        env = self.env or {}
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def further_pass(target: str, checks: list[str] | None) -> FurtherPass:
    """The pass of `--pass TARGET CHECKS...`: a name of memkv's backends (memkv/conformance/per_backend.py)
    brings its target and environment, and refuses to start where the backend cannot run, since a pass
    whose every check skips would report every mutant it tests as a survivor."""
    from memkv.conformance.per_backend import BACKENDS

    backend = BACKENDS.get(target)
    if backend is None:
        return FurtherPass(target, checks)
    missing = backend.missing()
    if missing:
        raise SystemExit(f"--pass {target}: the backend cannot run here: {missing}")
    return FurtherPass(backend.target, checks, dict(backend.env), f"{target} ({backend.target})")


def further_passes(args: argparse.Namespace) -> list[FurtherPass]:
    """The passes after the first, in order: --second-target's, then each --pass."""
    passes = [FurtherPass(args.second_target, args.second_checks)] if args.second_target else []
    return passes + [further_pass(target, checks or None) for target, *checks in args.passes or []]


def whole_run(options: list[str], check_modules: list[str] | None = None) -> str:
    """The test command that runs every check, or every check of these modules of the checks package
    (no selection by coverage)."""
    return shlex.join(whole_run_args(options, check_modules))


def whole_run_args(options: list[str], check_modules: list[str] | None = None) -> list[str]:
    package = checks_package()
    checks = [f"{package}.{name}" for name in check_modules] if check_modules else [package]
    return [sys.executable, "-m", "pytest", *options, "--pyargs", *checks]


def check_unmutated(work: Path, options: list[str], check_modules: list[str] | None,
                    kills: list[dict[str, Any]]) -> None:
    """Refuse a further pass's kills unless the checks that made them pass on the unmutated tree
    against that target: a target that fails to start, or a check that fails there anyway, would
    otherwise count as killing every mutant it ran. Runs the checks each kill names as failed, or every
    check of the pass when a kill names none (a timeout, a target that would not start)."""
    if not kills:
        return
    named = [FAILED_CHECK.findall(k["output"]) for k in kills]
    checks = sorted({c for found in named for c in found}) if all(named) else None
    command = whole_run_args(options, check_modules) if checks is None else \
        [sys.executable, "-m", "pytest", *options, *checks]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the checks that killed mutants on a further pass's target fail on the unmutated tree too "
                         f"(exit {done.returncode}), so those kills are not kills:\n{done.stdout[-3000:]}")


def run_pass(work: Path, modules: list[str], test: str, timeout: float, session: Path, target: str,
             keep: Callable[[Path], None]) -> tuple[int, int]:
    """One cosmic-ray session over `modules` with `test` as the test command, testing only the mutants
    `keep` leaves pending; returns (how many mutants, how many inside annotations: skipped)."""
    config = write_config(work, modules, test, timeout)
    cosmic = [sys.executable, "-m", "cosmic_ray.cli"]
    subprocess.run([*cosmic, "init", str(config), str(session)], cwd=work, check=True)
    record_target(session, target)
    equivalent = skip_equivalent(session, work)
    keep(session)
    subprocess.run([*cosmic, "exec", str(config), str(session)], cwd=work, check=True)
    return total_of(session), equivalent


def total_of(session: Path) -> int:
    from cosmic_ray.work_db import WorkDB, use_db

    with use_db(str(session), WorkDB.Mode.open) as db:
        return int(db.num_work_items)


def finish(args: argparse.Namespace, summary: dict[str, Any]) -> int:
    text = json.dumps(summary, indent=2)
    if args.report:
        Path(args.report).write_text(text + "\n")
    print(text)
    if args.floor is not None and (summary["score"] or 0.0) < args.floor:
        print(f"mutation score {summary['score']} is below the floor {args.floor}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
