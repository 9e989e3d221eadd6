"""pytest plugin of the conformance suite (auto-loaded through the `pytest11` entry point).

Harmless without `--memkv-target`: it only registers options and the `requirement` marker, and
its `memkv` fixture skips. With a target it loads the target once per run, decides each check's
profile from the requirement IDs it cites, runs unselected profiles' checks as skips, and turns
a skip or an "unsupported" answer inside a claimed profile into a failure (MKV-PRO-001).
Every report carries a `memkv` user property: requirements, profile, status and failures.
Without `--memkv-target` but with backends named (`--memkv-backends` or the `memkv_backends` ini
option, as memkv's own pyproject.toml does), every check runs once per backend as a named test
(memkv/conformance/per_backend.py).
"""

from __future__ import annotations

import dataclasses
import random
import traceback
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from memkv.errors import ErrorCode, MemkvError
from memkv.transport import PROFILES, Capabilities

from .requirements import declared_version, profile_of, requirements, version_tuple
from .support import Context, RequirementFailure
from .target import Target, load_target

REGRESSION_SEED = 20250501
"""Every certification also walks the state machines from this fixed seed (a regression baseline)."""
DEFAULT_SEED = REGRESSION_SEED
NOT_SELECTED = "profile not selected for this run"
NOT_APPLICABLE = "not applicable to the spec version the target declares"


@dataclasses.dataclass
class RunState:
    target: Target
    caps: Capabilities
    claimed: frozenset[str]
    selected: frozenset[str]
    seed: int
    examples: int
    steps: int
    certify: bool
    description: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def declared(self) -> tuple[int, int] | None:
        """The spec version the target declares, as the suite holds it to (None: every requirement)."""
        return declared_version(self.caps.spec_version)

    def newer_than_declared(self, ids: list[str]) -> list[str]:
        """The requirements among `ids` added after the version the target declares, when every known one is
        (a check citing one requirement the target must meet runs whole)."""
        reqs = requirements()
        known = [reqs[i] for i in ids if i in reqs]
        newer = [r for r in known if not r.applies_to(self.declared)]
        return [r.id for r in newer] if known and len(newer) == len(known) else []


_STATE_KEY = pytest.StashKey[RunState]()
_LOAD_ERROR_KEY = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memkv-conformance", "memkv conformance suite")
    group.addoption("--memkv-target", default=None, help="target: a memkv.connect URL or module:factory[?opts]")
    group.addoption("--memkv-profiles", default="", help="profiles to run (comma list or 'all'); default: claimed")
    group.addoption("--memkv-certify", action="store_true", default=False,
                    help="certification mode: fixed seed and example counts, no skips in claimed profiles")
    group.addoption("--memkv-seed", type=int, default=None, help="seed of every random choice")
    group.addoption("--memkv-examples", type=int, default=None, help="Hypothesis examples per property")
    group.addoption("--memkv-steps", type=int, default=None, help="steps per state-machine example")
    group.addoption("--memkv-max-shrink-time", type=float, default=60.0,
                    help="seconds Hypothesis may spend shrinking one failing example (default 60)")
    group.addoption("--memkv-backends", default=None,
                    help="without --memkv-target: run every check once per backend named here (comma list "
                         "of file, tcp, buffered, nixl or NAME=TARGET; default: the memkv_backends ini option)")
    parser.addini("memkv_backends", "backends every check runs against when no --memkv-target is given",
                  type="args", default=[])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requirement(*ids): spec requirement IDs this test checks")
    spec = config.getoption("--memkv-target", default=None)
    from .per_backend import register

    register(config, per_backend=not spec)
    if not spec:
        return
    try:
        target = load_target(spec)
        caps = target.capabilities()
    except Exception as exc:
        config.stash[_LOAD_ERROR_KEY] = f"cannot reach target {spec!r}: {type(exc).__name__}: {exc}"
        return
    cap_shrinking(float(config.getoption("--memkv-max-shrink-time") or 60.0))
    seed = config.getoption("--memkv-seed")
    config.stash[_STATE_KEY] = make_state(
        target, caps, certify=bool(config.getoption("--memkv-certify")),
        profiles=str(config.getoption("--memkv-profiles") or ""), seed=DEFAULT_SEED if seed is None else int(seed),
        examples=config.getoption("--memkv-examples"), steps=config.getoption("--memkv-steps"))


def make_state(target: Target, caps: Capabilities, *, certify: bool, profiles: str, seed: int,
               examples: int | None, steps: int | None) -> RunState:
    """What the checks of one target run with: claimed and selected profiles, seed, example counts."""
    claimed = frozenset(caps.profiles) | {"core"}
    if profiles in ("", "claimed"):
        selected = claimed
    elif profiles == "all":
        selected = frozenset(PROFILES)
    else:
        selected = frozenset(p.strip() for p in profiles.split(",") if p.strip()) | {"core"}
    if certify:
        selected = selected | claimed
    return RunState(
        target, caps, claimed, selected, seed=seed,
        examples=(25 if certify else 15) if examples is None else int(examples),
        steps=(40 if certify else 30) if steps is None else int(steps),
        certify=certify,
        description=target.describe() | {"capabilities": caps.to_dict()},
    )


def cap_shrinking(seconds: float) -> None:
    """Bound the time Hypothesis spends shrinking a failure (`--max-shrink-time`).

    Hypothesis offers no setting for it; its engine reads this module constant for each run.
    """
    from hypothesis.internal.conjecture import engine

    if not hasattr(engine, "MAX_SHRINKING_SECONDS"):
        raise RuntimeError("this Hypothesis version has no shrink deadline; --max-shrink-time cannot be honoured")
    engine.MAX_SHRINKING_SECONDS = max(1, int(seconds))  # type: ignore[misc]


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE_KEY, None)
    if state is not None:
        try:
            state.target.close()
        except Exception:
            pass


def run_state(config: pytest.Config) -> RunState | None:
    return config.stash.get(_STATE_KEY, None)


def requirement_ids(item: pytest.Item) -> list[str]:
    ids: list[str] = []
    for marker in item.iter_markers("requirement"):
        ids.extend(str(a) for a in marker.args)
    return ids


def target_error(config: pytest.Config) -> str | None:
    """Why the target could not be loaded (None when it was): a setup error ends the run before any check."""
    return config.stash.get(_LOAD_ERROR_KEY, None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    load_error = target_error(config)
    if load_error is not None:  # every check would fail the same way: run none, say it once, whole
        config.hook.pytest_deselected(items=list(items))
        items[:] = []
        return
    for item in items:
        ids = requirement_ids(item)
        if ids and "memkv" in getattr(item, "fixturenames", ()):
            item.stash[_ITEM_KEY] = (ids, profile_of(ids))


_ITEM_KEY = pytest.StashKey[tuple[list[str], str]]()
_ITEM_STATE_KEY = pytest.StashKey[RunState]()


@pytest.fixture(scope="session")
def memkv_run(request: pytest.FixtureRequest) -> Iterator[RunState | None]:
    """The target the checks run against: the run's `--memkv-target` (None without one) or, as a
    parameter (memkv/conformance/per_backend.py), one backend started once and closed after its last check."""
    if not hasattr(request, "param"):
        yield run_state(request.config)
        return
    from .per_backend import started

    with started(request, str(request.param)) as state:
        yield state


@pytest.fixture
def memkv(request: pytest.FixtureRequest, memkv_run: RunState | None) -> Iterator[Context]:
    """The conformance context: target, its declaration, fresh namespaces, seeded randomness."""
    load_error = request.config.stash.get(_LOAD_ERROR_KEY, None)
    if load_error is not None:
        raise RuntimeError(load_error)
    state = memkv_run
    if state is None:
        pytest.skip("no --memkv-target given")
    request.node.stash[_ITEM_STATE_KEY] = state
    info = request.node.stash.get(_ITEM_KEY, None)
    if info is not None and info[1] not in state.selected:
        pytest.skip(f"{NOT_SELECTED}: {info[1]}")
    newer = state.newer_than_declared(info[0]) if info is not None else []
    if newer:
        since = max((requirements()[i].since for i in newer), key=version_tuple)
        pytest.skip(f"{NOT_APPLICABLE}: {', '.join(newer)} (spec {since}; the target declares "
                    f"{state.caps.spec_version})")
    rng = random.Random(f"{state.seed}:{request.node.nodeid}")
    ctx = Context(state.target, state.caps, state.claimed, state.seed, state.examples, state.steps,
                  state.certify, rng)
    yield ctx
    ctx.close_transports()
    ctx.empty_namespaces()


def _exceptions(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        found: list[BaseException] = []
        for inner in exc.exceptions:
            found.extend(_exceptions(inner))
        return found
    return [exc]


def _is_unsupported(exc: BaseException) -> bool:
    return isinstance(exc, NotImplementedError) or (
        isinstance(exc, MemkvError) and exc.code is ErrorCode.UNSUPPORTED)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome: Any = yield
    info = item.stash.get(_ITEM_KEY, None)
    state = item.stash.get(_ITEM_STATE_KEY, None) or run_state(item.config)
    if info is None or (state is None and item.config.stash.get(_LOAD_ERROR_KEY, None) is None):
        return
    report: pytest.TestReport = outcome.get_result()
    ids, profile = info
    claimed = state is not None and profile in state.claimed
    record: dict[str, Any] = {"requirements": ids, "profile": profile, "claimed": claimed,
                              "status": "pass", "failures": [], "message": ""}
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        record["message"] = reason
        if claimed and NOT_SELECTED not in reason and NOT_APPLICABLE not in reason:
            report.outcome = "failed"
            report.longrepr = f"[MKV-PRO-001] skipped in claimed profile {profile}: {reason}"
            record["status"] = "fail"
            record["failures"] = [{"requirement": "MKV-PRO-001", "message": f"skipped in claimed profile {profile}: "
                                   f"{reason}", "expected": "the check runs", "actual": "skip",
                                   "reproduction": item.nodeid}]
        else:
            record["status"] = "skip"
    elif report.failed and call.excinfo is not None:
        excs = _exceptions(call.excinfo.value)
        failures = [e.to_dict() for e in excs if isinstance(e, RequirementFailure)]
        unsupported = [e for e in excs if _is_unsupported(e)]
        if failures:
            record["status"] = "fail"
        elif unsupported:
            record["status"] = "fail"
            reqs = requirements()
            own_ids = [r for r in ids if profile == "core" or (r in reqs and reqs[r].profile == profile)]
            failures = [{"requirement": req, "message": f"operation unsupported: {unsupported[0]}",
                         "expected": "supported (profile claimed)" if claimed else "supported",
                         "actual": f"{type(unsupported[0]).__name__}: {unsupported[0]}", "reproduction": ""}
                        for req in (["MKV-PRO-001"] if claimed else []) + own_ids]
        elif call.when == "call" and all(isinstance(e, AssertionError | MemkvError) for e in excs):
            record["status"] = "fail"
            failures = [{"requirement": req, "message": str(excs[0]).splitlines()[0] if str(excs[0]) else
                         type(excs[0]).__name__, "expected": "", "actual": f"{type(excs[0]).__name__}: {excs[0]}",
                         "reproduction": ""} for req in ids]
        else:
            record["status"] = "error"
            first = excs[0]
            text = "".join(traceback.format_exception_only(type(first), first)).strip()
            failures = [{"requirement": req, "message": f"error in {call.when}: {text}", "expected": "",
                         "actual": text, "reproduction": ""} for req in ids]
        repro = _hypothesis_repro(report)
        for failure in failures:
            if not failure.get("reproduction") and repro:
                failure["reproduction"] = repro
            if not failure.get("reproduction"):
                failure["reproduction"] = (f"pytest --pyargs memkv.conformance.checks --memkv-target '<target>' "
                                           f"-k '{item.name}'")
        record["failures"] = failures
        record["message"] = failures[0]["message"] if failures else ""
    elif report.failed:
        record["status"] = "error"
    report.user_properties.append(("memkv", record))


def _hypothesis_repro(report: pytest.TestReport) -> str:
    """The falsifying example or state-machine steps Hypothesis printed, if any."""
    lines: list[str] = []
    for _name, content in report.sections:
        lines.extend(content.splitlines())
    text = report.longreprtext
    keep = [line for line in text.splitlines() if line.startswith(("Falsifying", "state = ", "state.",
                                                                    "Draw ", "    state.", "    "))
            and ("state" in line or "Falsifying" in line)]
    return "\n".join(keep[:80])


__all__ = ["DEFAULT_SEED", "NOT_APPLICABLE", "REGRESSION_SEED", "RunState", "make_state", "memkv", "memkv_run",
           "requirement_ids", "run_state"]
