"""Which conformance checks execute each line of the mutated modules (the test selection of tools/mutation.py).

tools/mutation.py runs the conformance checks once, unmutated, with this module as a pytest plugin
(`-p tools.mutation_coverage`) and `sitecustomize.py` of MEMKV_MUTATION_STARTUP on PYTHONPATH, which
starts coverage.py in every Python process before anything is imported: the pytest process and the
child processes some checks start (`memkv.conformance.worker`). Every line is recorded with the
check that was running (a child inherits it through MEMKV_MUTATION_CHECK); a line executed outside
any check (imports, collection, the start of the target) is recorded with the context "" and
selects every check. `line_map` turns the data into the map tools/mutation_select.py reads.

Limits, said where the campaign is reported (docs/conformance.md): a child process killed with
SIGKILL by a crash check saves no data (the lines it ran are attributed only where the parent or
another check also ran them), and a check whose path depends on timing may run lines under a
mutant that it did not run here.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

CHECK_ENV = "MEMKV_MUTATION_CHECK"
DATA_ENV = "MEMKV_MUTATION_COVERAGE"
INCLUDE_ENV = "MEMKV_MUTATION_INCLUDE"
DURATIONS_ENV = "MEMKV_MUTATION_DURATIONS"
OUTSIDE = ""

STARTUP = """\
import os
if os.environ.get("MEMKV_MUTATION_COVERAGE"):
    import coverage
    _cov = coverage.Coverage(data_file=os.environ["MEMKV_MUTATION_COVERAGE"], data_suffix=True,
                             include=os.environ["MEMKV_MUTATION_INCLUDE"].split(os.pathsep),
                             context=os.environ.get("MEMKV_MUTATION_CHECK", ""), config_file=False)
    _cov.start()
    import atexit
    atexit.register(_cov.save)
    atexit.register(_cov.stop)
"""


def write_startup(folder: Path) -> None:
    """The sitecustomize.py that starts coverage in every process of the measuring run."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(STARTUP)


def _switch(name: str) -> None:
    import coverage

    current = coverage.Coverage.current()
    if current is not None:
        current.switch_context(name)
    os.environ[CHECK_ENV] = name  # child processes started by this check record under its name


_durations: dict[str, float] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, None]:
    _switch(item.nodeid)
    start = time.monotonic()
    yield
    _durations[item.nodeid] = round(time.monotonic() - start, 3)
    _switch(OUTSIDE)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get(DURATIONS_ENV)
    if path:
        Path(path).write_text(json.dumps(_durations))


def line_map(data_file: Path, root: Path) -> dict[str, dict[str, list[str]]]:
    """{module path relative to root: {line: [checks that ran it, "" for outside any check]}} from the
    combined data of every process."""
    import coverage

    cov = coverage.Coverage(data_file=str(data_file), config_file=False)
    cov.combine(strict=True)
    data = cov.get_data()
    out: dict[str, dict[str, list[str]]] = {}
    for measured in data.measured_files():
        module = str(Path(measured).resolve().relative_to(root.resolve()))
        by_line = data.contexts_by_lineno(measured)
        out[module] = {str(line): sorted(contexts) for line, contexts in sorted(by_line.items())}
    return out
