"""memkv's own test run: every conformance check once per backend, as a named test.

Active when pytest runs without `--memkv-target` and backends are named (`--memkv-backends` or
the `memkv_backends` ini option of memkv's pyproject.toml). A run given no paths (pytest's
`testpaths`) then also collects the checks of the installed package (the copy tox installs; the
source tree in an editable install). Each check that uses the `memkv` fixture is parametrised
over the backends, so a broken requirement reads
`test_sessions.py::test_close_releases_pins[tcp]`. pytest groups the checks by backend; a
backend's target is started before its first check and closed after its last one.

The same results make the backend's certification: every check runs in certification mode
(claimed profiles may not skip, fixed example counts, the regression seed walked too) and its
`memkv` record goes to that backend's `runner.Collector`, which gives the results document of
`memkv conformance --certify`, with the reports (results.json, junit.xml, report.html) in
$MEMKV_CONFORMANCE_REPORTS/<backend> when set. A test marked `memkv_backend(NAME)` that uses the
`memkv_certification` fixture is moved right after NAME's last check and gets that document.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .plugin import RunState, cap_shrinking, make_state
from .runner import CERTIFY_EXAMPLES, CERTIFY_STEPS, CHECKS_DIR, Collector, Options, summarise
from .seeds import run_seed
from .target import load_target

REPORTS_ENV = "MEMKV_CONFORMANCE_REPORTS"
"""Directory whose <backend> subfolders receive each certification's reports (CI artefacts)."""
PARAMETER = "memkv_run"


def _nixl_missing() -> str | None:
    from memkv.nixl.agent import availability

    ok, reason = availability()
    return None if ok else f"NIXL unavailable: {reason}"


@dataclasses.dataclass(frozen=True)
class Backend:
    """One of memkv's backends as a conformance target."""

    name: str
    target: str
    """The `load_target` spec."""
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    """Set in this process (and the servers it starts) while the backend's checks run."""
    missing: Callable[[], str | None] = lambda: None
    """Why the backend cannot run on this machine (its checks are then skipped with that reason)."""


BACKENDS = {backend.name: backend for backend in (
    Backend("file", "file://"),
    Backend("tcp", "memkv-serve"),
    # The same server with its device opened buffered, as on tmpfs (the "dram" deployment): streamed
    # puts receive straight into the mapped page cache and gets send from it, a data path of its own.
    Backend("buffered", "memkv-serve", {"MEMKV_DIRECT": "0"}),
    # UCX over TCP in both processes (CI machines have no RDMA); the client in strict mode, so a
    # silent fall-back to the TCP data path fails instead of certifying the wrong thing.
    Backend("nixl", "memkv-serve?scheme=memkv%2Bnixl&serve_args=--nixl%20on",
            {"UCX_TLS": "tcp", "MEMKV_TRANSPORT": "nixl"}, _nixl_missing),
)}


@dataclasses.dataclass(frozen=True)
class Certification:
    """A backend's certification: the results document and the folder its reports were written to."""

    doc: dict[str, Any]
    report_dir: Path


@dataclasses.dataclass
class BackendRun:
    """What one backend's checks produced: the collector of their records, then the certification."""

    backend: Backend
    collector: Collector
    report_dir: Path = Path()
    started: float = 0.0
    certification: Certification | None = None


class Ledger:
    """pytest plugin object of the per-backend run: parametrises the checks, notes which item
    belongs to which backend, and gathers each backend's results."""

    def __init__(self, backends: list[Backend], seed: int, max_shrink_time: float) -> None:
        self.backends = {backend.name: backend for backend in backends}
        self.names = list(self.backends)
        self.seed = seed
        self.max_shrink_time = max_shrink_time
        self.runs: dict[str, BackendRun] = {}
        self.backend_of: dict[str, str] = {}
        """nodeid -> backend name, of every collected check."""
        self.suffix: dict[str, str] = {}
        """nodeid -> the check's node id as `memkv conformance` names it (see _plain_nodeid)."""

    def run(self, name: str) -> BackendRun:
        if name not in self.runs:
            self.runs[name] = BackendRun(self.backends[name], Collector(io.StringIO(), quiet=True))
        return self.runs[name]

    def pytest_report_header(self) -> str:
        return (f"memkv conformance: every check per backend ({', '.join(self.names)}), certification mode, "
                f"seed {self.seed} (replay: --memkv-seed {self.seed})")

    @pytest.hookimpl(trylast=True)
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Last, so the backend is the last part of a check's id: `test_x[4096-tcp]`."""
        if PARAMETER in metafunc.fixturenames:
            metafunc.parametrize(PARAMETER, self.names, ids=self.names, indirect=True, scope="session")

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """After pytest grouped the checks by backend: note each check's backend, and move each
        certification test right after the last check of its backend."""
        last: dict[str, pytest.Item] = {}
        for item in items:
            callspec = getattr(item, "callspec", None)
            name = callspec.params.get(PARAMETER) if callspec is not None else None
            if isinstance(name, str):
                self.backend_of[item.nodeid] = name
                self.suffix[item.nodeid] = _plain_nodeid(item, name)
                last[name] = item
        for item in [i for i in items if i.get_closest_marker("memkv_backend") is not None]:
            name = _certified_backend(item)
            if name in last:
                items.remove(item)
                items.insert(items.index(last[name]) + 1, item)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = self.backend_of.get(report.nodeid)
        if name is None:
            return
        plain = copy.copy(report)
        plain.nodeid = self.suffix[report.nodeid]
        self.run(name).collector.pytest_runtest_logreport(plain)

    def certify(self, name: str) -> Certification:
        """The certification document of backend `name` from the checks that ran (computed once)."""
        run = self.run(name)
        if run.certification is None:
            collector = run.collector
            failed = any(t["status"] in ("fail", "error") for t in collector.tests.values())
            options = Options(target=run.backend.target, certify=True, max_shrink_time=self.max_shrink_time)
            doc = summarise(collector, options, self.seed, CERTIFY_EXAMPLES, CERTIFY_STEPS,
                            time.time() - run.started, int(failed))
            from .report import write_reports

            write_reports(doc, run.report_dir)
            run.certification = Certification(doc, run.report_dir)
        return run.certification


_LEDGER = pytest.StashKey[Ledger]()


def register(config: pytest.Config, per_backend: bool) -> None:
    """The `memkv_certification` fixture, always; the per-backend run when `per_backend` (no
    --memkv-target given) and backends are named."""
    config.addinivalue_line("markers", "memkv_backend(name): the backend whose certification a test reads")
    config.pluginmanager.register(sys.modules[__name__], "memkv-per-backend-fixtures")
    if not per_backend:
        return
    option = config.getoption("--memkv-backends", default=None)
    names = [n.strip() for n in option.split(",") if n.strip()] if option is not None \
        else [str(n) for n in config.getini("memkv_backends")]
    if not names:
        return
    seed = config.getoption("--memkv-seed", default=None)
    shrink = float(config.getoption("--memkv-max-shrink-time", default=None) or 60.0)
    config.stash[_LEDGER] = Ledger([backend_named(n) for n in names], run_seed(None if seed is None else int(seed)),
                                   shrink)
    cap_shrinking(shrink)
    config.pluginmanager.register(config.stash[_LEDGER], "memkv-per-backend")
    if config.args_source is pytest.Config.ArgsSource.TESTPATHS:
        # the installed checks, not a path in the checkout: under tox the package is installed, and
        # collecting the checkout's copy of an imported package fails (import file mismatch)
        config.args.append(str(CHECKS_DIR))


def backend_named(entry: str) -> Backend:
    """`file`, `tcp`, `buffered`, `nixl`, or `NAME=SPEC` for any other target (SPEC as `memkv conformance --target`)."""
    name, sep, spec = entry.partition("=")
    if sep:
        if not name.isidentifier() or not spec:
            raise pytest.UsageError(f"memkv backend {entry!r}: expected NAME=TARGET with NAME a plain word")
        return Backend(name, spec)
    if entry not in BACKENDS:
        raise pytest.UsageError(f"unknown memkv backend {entry!r}; known: {', '.join(BACKENDS)}, or NAME=TARGET")
    return BACKENDS[entry]


def _plain_nodeid(item: pytest.Item, name: str) -> str:
    """The check's node id as `memkv conformance` gives it: its file relative to the folder above the
    conformance package (wherever the package is installed), without the backend parameter."""
    try:
        path = item.path.relative_to(CHECKS_DIR.parent.parent).as_posix()
    except ValueError:
        path = item.nodeid.split("::")[0]
    return _without_backend(path + "::" + item.nodeid.split("::", 1)[1], name)


def _without_backend(nodeid: str, name: str) -> str:
    if nodeid.endswith(f"[{name}]"):
        return nodeid[: -len(name) - 2]
    return nodeid[: -len(name) - 2] + "]"  # "...[4096-tcp]" -> "...[4096]"


def _certified_backend(item: pytest.Item) -> str:
    marker = item.get_closest_marker("memkv_backend")
    if marker is None or len(marker.args) != 1:
        raise pytest.UsageError(f"{item.nodeid}: mark it memkv_backend(NAME) to read NAME's certification")
    return str(marker.args[0])


@contextlib.contextmanager
def started(request: pytest.FixtureRequest, name: str) -> Iterator[RunState]:
    """Start backend `name` for its checks (skips them all, with the reason, when it cannot run here)."""
    ledger = request.config.stash[_LEDGER]
    backend = ledger.backends[name]
    missing = backend.missing()
    if missing:
        pytest.skip(f"backend {name}: {missing}")
    run = ledger.run(name)
    reports = os.environ.get(REPORTS_ENV)
    run.report_dir = Path(reports) / name if reports else \
        request.getfixturevalue("tmp_path_factory").mktemp(f"conformance-{name}")
    with pytest.MonkeyPatch.context() as env:
        for key, value in backend.env.items():
            env.setenv(key, value)
        run.started = time.time()
        target = load_target(backend.target)
        try:
            caps = target.capabilities()
            state = make_state(target, caps, certify=True, profiles="", seed=ledger.seed, examples=None, steps=None)
            run.collector.state = state
            yield state
            ledger.certify(name)  # the reports also when no certification test asked for them
        finally:
            target.close()


@pytest.fixture
def memkv_certification(request: pytest.FixtureRequest) -> Certification:
    """The certification document of the backend named by the test's `memkv_backend` marker."""
    name = _certified_backend(request.node)
    ledger = request.config.stash.get(_LEDGER, None)
    if ledger is None:
        pytest.skip("this run does not run the checks per backend (--memkv-target given, or no backends named "
                    "by --memkv-backends or the ini option memkv_backends)")
    if name not in ledger.names:
        pytest.skip(f"backend {name} is not among this run's backends ({', '.join(ledger.names)})")
    if name not in set(ledger.backend_of.values()):
        pytest.skip(f"the conformance checks were not collected in this run; the certification of {name} comes "
                    f"from `pytest memkv/conformance/checks {request.node.nodeid.split('::')[0]}`")
    missing = ledger.backends[name].missing()
    if missing:
        pytest.skip(f"backend {name}: {missing}")
    return ledger.certify(name)


__all__ = ["BACKENDS", "Backend", "Certification", "Ledger", "backend_named", "memkv_certification", "register",
           "started"]
