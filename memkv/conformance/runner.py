"""Run the suite programmatically and roll results up per requirement and per profile."""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, TextIO, cast

import pytest

from memkv.transport import PROFILES

from . import SUITE_VERSION
from .interrupt import interrupt_after
from .plugin import REGRESSION_SEED
from .requirements import declared_version, exclusions, requirements, spec_version, worst
from .seeds import run_seed

CERTIFY_EXAMPLES = 25
CERTIFY_STEPS = 40
CHECKS_DIR = Path(__file__).resolve().parent / "checks"


@dataclasses.dataclass
class Options:
    target: str
    profiles: str = ""
    report_dir: str | None = None
    certify: bool = False
    seed: int | None = None
    examples: int | None = None
    steps: int | None = None
    select: tuple[str, ...] = ()
    """Run only checks citing one of these requirement IDs (the suite's own defect tests use it)."""
    keyword: str | None = None
    quiet: bool = False
    stream: TextIO | None = None
    max_shrink_time: float = 60.0
    """Seconds Hypothesis may spend shrinking one failing example."""
    timeout: float | None = None
    """Stop the run after this many seconds; the report is still written and temporary stores removed."""


class Collector:
    """pytest plugin object: gathers each check's `memkv` record and prints progress."""

    def __init__(self, stream: TextIO, quiet: bool) -> None:
        self.stream = stream
        self.quiet = quiet
        self.tests: dict[str, dict[str, Any]] = {}
        self.total = 0
        self.done = 0
        self.state: Any = None
        self.setup_error: str | None = None
        self.select: tuple[str, ...] = ()

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        from .plugin import requirement_ids

        if self.select:
            keep = [i for i in items if set(requirement_ids(i)) & set(self.select)]
            config.hook.pytest_deselected(items=[i for i in items if i not in keep])
            items[:] = keep

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        from .plugin import run_state, target_error

        self.total = len(session.items)
        self.state = run_state(session.config)
        self.setup_error = target_error(session.config)
        if not self.quiet:
            print(f"memkv conformance: {self.total} checks", file=self.stream, flush=True)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = cast(dict[str, Any] | None, next((v for k, v in report.user_properties if k == "memkv"), None))
        entry = self.tests.setdefault(report.nodeid, {"nodeid": report.nodeid, "name": report.nodeid.split("::")[-1],
                                                      "status": "skip", "duration_s": 0.0, "failures": [],
                                                      "requirements": [], "profile": "core", "message": ""})
        entry["duration_s"] += report.duration
        if record is None:
            if report.failed:
                entry.setdefault("phases", []).append("error")
                entry["status"] = worst(entry["phases"])
                entry["message"] = report.longreprtext[-2000:]
            return
        entry["requirements"] = record["requirements"]
        entry["profile"] = record["profile"]
        entry["claimed"] = record["claimed"]
        if report.when == "call" or record["status"] != "pass":
            entry.setdefault("phases", []).append(record["status"])
        entry["status"] = worst(entry.get("phases", []))
        if record["failures"]:
            entry["failures"].extend(record["failures"])
            entry["message"] = record["message"]
            entry["longrepr"] = report.longreprtext[-4000:]
        elif record["status"] == "skip":
            entry["message"] = record["message"]
        if report.when == "teardown":
            self.done += 1
            if not self.quiet:
                ids = ",".join(entry["requirements"])
                print(f"[{self.done:3d}/{self.total}] {entry['status'].upper():5s} {entry['name']} [{ids}]",
                      file=self.stream, flush=True)


def _environment() -> dict[str, Any]:
    import hypothesis

    import memkv

    return {"python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine(),
            "pytest": pytest.__version__, "hypothesis": hypothesis.__version__, "memkv": memkv.__version__,
            "cpus": os.cpu_count()}


def run(options: Options) -> dict[str, Any]:
    """Run the checks against `options.target`; returns the results document (results.json)."""
    stream = options.stream or sys.stderr
    certify = options.certify
    seed = run_seed(options.seed)
    examples = CERTIFY_EXAMPLES if certify else options.examples
    steps = CERTIFY_STEPS if certify else options.steps
    args = [str(CHECKS_DIR), "-p", "no:cacheprovider", "-p", "no:randomly",
            f"--rootdir={CHECKS_DIR.parent.parent}", "--memkv-target", options.target,
            f"--memkv-seed={seed}", f"--hypothesis-seed={seed}", "-o", "python_files=test_*.py",
            "-o", "testpaths=", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    args += ["-p", "no:terminal"]
    if options.profiles:
        args += ["--memkv-profiles", options.profiles]
    if certify:
        args.append("--memkv-certify")
    if examples is not None:
        args.append(f"--memkv-examples={examples}")
    if steps is not None:
        args.append(f"--memkv-steps={steps}")
    if options.keyword:
        args += ["-k", options.keyword]
    args.append(f"--memkv-max-shrink-time={options.max_shrink_time}")
    collector = Collector(stream, options.quiet)
    collector.select = tuple(options.select)
    if not options.quiet:
        print(f"memkv conformance: seed {seed} (replay with --seed {seed})", file=stream, flush=True)
    started = time.time()
    with interrupt_after(options.timeout) as cut:
        exit_code = pytest.main(args, plugins=[collector])
    duration = time.time() - started
    doc = summarise(collector, options, seed, examples, steps, duration, int(exit_code))
    if cut.reason:
        doc["interrupted"] = cut.reason
        doc["verdict"] = "NOT CERTIFIED" if certify else "FAILED"
    if options.report_dir:
        from .report import write_reports

        write_reports(doc, Path(options.report_dir))
    return doc


def summarise(collector: Collector, options: Options, seed: int, examples: int | None, steps: int | None,
              duration: float, exit_code: int) -> dict[str, Any]:
    state = collector.state
    reqs = requirements()
    excl = exclusions()
    claimed = sorted(state.claimed) if state is not None else []
    selected = sorted(state.selected) if state is not None else []
    declared_text = state.caps.spec_version if state is not None else spec_version()
    declared = declared_version(declared_text)
    checked_against = spec_version() if declared is None else f"{declared[0]}.{declared[1]}"
    per_req: dict[str, dict[str, Any]] = {}
    for req in reqs.values():
        per_req[req.id] = {**req.to_dict(), "status": "skip", "tests": [], "failures": [],
                           "claimed": req.profile in claimed, "excluded": None,
                           "applicable": req.applies_to(declared)}
        if req.id in excl:
            per_req[req.id]["excluded"] = {"reason": excl[req.id].reason, "checked_by": excl[req.id].checked_by}
    for test in collector.tests.values():
        failed_ids = {f["requirement"] for f in test["failures"]}
        for req_id in set(test["requirements"]) | failed_ids:
            entry = per_req.get(req_id)
            if entry is None:
                continue
            entry["tests"].append(test["nodeid"])
            if test["status"] in ("pass", "skip"):
                status = test["status"]
            elif test["status"] == "error":
                status = "error"
            elif req_id in failed_ids:
                status = "fail"
            else:
                status = "skip"  # the check stopped at another requirement's failure: not demonstrated here
            entry["status"] = worst([entry["status"], status])
            entry["failures"].extend(f | {"test": test["nodeid"]} for f in test["failures"]
                                     if f["requirement"] == req_id)
    profiles: dict[str, dict[str, Any]] = {}
    for name in PROFILES:
        every_must = [r for r in per_req.values() if r["profile"] == name and r["level"] == "MUST"]
        musts = [r for r in every_must if r["applicable"]]
        counted = [r for r in musts if not (r["excluded"] and not r["tests"])]
        counts = {s: sum(1 for r in counted if r["status"] == s) for s in ("pass", "fail", "error", "skip")}
        profiles[name] = {"claimed": name in claimed, "selected": name in selected,
                          "status": worst([r["status"] for r in counted]), "requirements": len(musts),
                          "excluded": len(musts) - len(counted), "not_applicable": len(every_must) - len(musts),
                          **counts}
    in_claim = [r for r in per_req.values() if r["profile"] in claimed and r["level"] == "MUST" and r["applicable"]]
    bad = [r for r in in_claim if r["status"] in ("fail", "error")]
    untested = [r for r in in_claim if r["status"] == "skip" and not r["excluded"]]
    if state is None:
        verdict = "ERROR"
    elif options.certify:
        verdict = "CERTIFIED" if not bad and not untested else "NOT CERTIFIED"
    else:
        verdict = "PASSED" if not bad else "FAILED"
    tests = sorted(collector.tests.values(), key=lambda t: t["nodeid"])
    totals = {s: sum(1 for t in tests if t["status"] == s) for s in ("pass", "fail", "error", "skip")}
    return {
        "suite": {"name": "memkv-conformance", "version": SUITE_VERSION},
        "spec_version": spec_version(),
        "declared_spec_version": declared_text,
        "checked_against": checked_against,
        "verdict": verdict,
        "certify": options.certify,
        "seed": seed,
        "regression_seed": REGRESSION_SEED,
        "replay": f"--seed {seed}",
        "max_shrink_time_s": options.max_shrink_time,
        "interrupted": None,
        "examples": examples,
        "steps": steps,
        "target": state.description if state else
                  {"spec": options.target},
        "claimed_profiles": claimed,
        "selected_profiles": selected,
        "environment": _environment(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - duration)),
        "duration_s": round(duration, 2),
        "pytest_exit_code": exit_code,
        "setup_error": collector.setup_error,
        "totals": totals,
        "blocking": [r["id"] for r in bad] + [r["id"] for r in untested],
        "profiles": profiles,
        "requirements": per_req,
        "tests": tests,
    }


__all__ = ["CERTIFY_EXAMPLES", "REGRESSION_SEED", "CERTIFY_STEPS", "Collector", "Options", "run", "summarise"]
