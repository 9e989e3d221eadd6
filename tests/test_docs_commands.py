"""Every ```sh block of README.md, docs/*.md and the package's README.md files runs as written.

Convention (for whoever writes documentation):

- Each ```sh block is one test. It runs with `bash -euo pipefail` in a fresh, empty temporary
  directory, which is also $HOME, with this interpreter's bin directory first on PATH (as in an
  activated virtualenv of a checkout: `memkv`, `python`, `pip` are the checkout's) and
  $MEMKV_REPO set to the repository root (for commands that read a file of the checkout). Other
  MEMKV_* variables of the test run are not passed on, except $MEMKV_CONFORMANCE_SEED (tests/conftest.py
  pins the regression seed, so a documented certification cannot fail CI by its draw).
  Blocks do not share state: a block that needs a keys file creates it.
- A block whose line right above the opening fence is `<!-- not-runnable: REASON -->` is not
  run (RDMA hardware, root-owned paths, the network, the test suite itself...). REASON must say
  why; an empty reason fails.
- A block marked `<!-- slow: REASON -->` (a run of minutes; REASON names what covers the same
  path in every CI run) runs only on demand, with MEMKV_DOCS_SLOW=1 (600 s); otherwise it is
  reported as skipped with its reason.
- A block that starts a server runs it in the background (`memkv serve ... &`) and waits for
  it with `memkv admin --wait 30 health` before talking to it. When the block ends, every
  background job it started gets SIGTERM and must exit with status 0 within 15 s (a server
  drains and stops): a server that crashed or hangs fails the block.
- Servers in the docs use the documented defaults 127.0.0.1:9900 (admin 9901). The test checks
  those ports are free first and fails with that message if not (never a silent skip).
- A block has 120 s, stretched on a busy machine by the load factor of the conformance suite
  (memkv/conformance/timing.py: load per CPU, at least 1) up to 600 s: a documented certification
  takes about 30 s alone and over 60 s at a load of 9 on 2 cores.
- The shared workload traces sit beside the checkout (`../shared/traces/`, as in a developer's
  tree): the block's directory has a `../shared` link to them, and a block that names
  `../shared/` is skipped, saying so, only where they are absent (as the trace tests are).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys

import pytest

from memkv.conformance.seeds import SEED_ENV
from memkv.conformance.timing import scaled

REPO = pathlib.Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "memkv").rglob("README.md"))]
NOT_RUNNABLE = re.compile(r"^<!--\s*not-runnable:(?P<reason>.*?)-->\s*$")
SLOW = re.compile(r"^<!--\s*slow:(?P<reason>.*?)-->\s*$")
BLOCK_SECONDS = 120
SLOW_BLOCK_SECONDS = 600
MAX_BLOCK_SECONDS = 600
DOC_PORTS = (9900, 9901)
SHARED = REPO.parent / "shared"

# Runs the block; on exit (success or not) stops what it left in the background and fails on a job
# that did not end cleanly. `wait PID` gives the job's exit status (143 = died of our SIGTERM
# without handling it, a failure too: a memkv server exits 0 on SIGTERM).
_WRAPPER = r"""
__memkv_stop_jobs() {
    local status=$? pid rc i
    for pid in $(jobs -p); do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in $(jobs -p); do
        for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "docs-test: background job $pid did not stop within 15 s of SIGTERM" >&2
            kill -KILL "$pid" 2>/dev/null || true
            status=1
        fi
        rc=0; wait "$pid" || rc=$?
        if [ "$rc" -ne 0 ]; then
            echo "docs-test: background job $pid exited with status $rc" >&2
            status=1
        fi
    done
    exit $status
}
trap __memkv_stop_jobs EXIT
set -euo pipefail
%s
"""


@dataclasses.dataclass(frozen=True)
class ShellBlock:
    document: pathlib.Path
    line: int  # 1-based line of the opening fence
    text: str
    not_runnable: str | None  # the reason, when the block is marked
    slow: str | None = None  # the reason, when the block runs only on demand

    @property
    def name(self) -> str:
        return f"{self.document.relative_to(REPO)}:{self.line}"


def shell_blocks(document: pathlib.Path) -> list[ShellBlock]:
    lines = document.read_text(encoding="utf-8").splitlines()
    blocks: list[ShellBlock] = []
    index = 0
    while index < len(lines):
        if lines[index].strip() == "```sh":
            start = index
            end = index + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            assert end < len(lines), f"{document}:{start + 1}: ```sh block is never closed"
            previous = lines[start - 1].strip() if start > 0 else ""
            marker, slow = NOT_RUNNABLE.match(previous), SLOW.match(previous)
            blocks.append(ShellBlock(document, start + 1, "\n".join(lines[start + 1:end]),
                                     marker.group("reason").strip() if marker else None,
                                     slow.group("reason").strip() if slow else None))
            index = end
        index += 1
    return blocks


ALL_BLOCKS = [block for document in DOCUMENTS for block in shell_blocks(document)]


def test_blocks_are_found() -> None:
    # The extraction itself: the README's quick start is a ```sh block, so finding none means
    # the parser (or the docs' fences) broke and every other test here would pass vacuously.
    assert any(b.document.name == "README.md" for b in ALL_BLOCKS)
    assert sum(1 for b in ALL_BLOCKS if b.not_runnable is None) >= 5


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.not_runnable is not None or b.slow is not None],
                         ids=lambda b: b.name)
def test_marked_blocks_say_why(block: ShellBlock) -> None:
    assert block.not_runnable or block.slow, f"{block.name}: a <!-- not-runnable/slow: REASON --> needs a reason"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.timeout(max(SLOW_BLOCK_SECONDS, MAX_BLOCK_SECONDS) + 60)  # the block's own limit ends it first
@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.not_runnable is None], ids=lambda b: b.name)
def test_documented_command_runs(block: ShellBlock, tmp_path: pathlib.Path) -> None:
    if block.slow is not None and os.environ.get("MEMKV_DOCS_SLOW") != "1":
        pytest.skip(f"slow block, run with MEMKV_DOCS_SLOW=1: {block.slow}")
    if "../shared/" in block.text and not SHARED.is_dir():
        pytest.skip(f"{block.name} reads the shared traces, and {SHARED} is absent")
    seconds = SLOW_BLOCK_SECONDS if block.slow is not None else min(scaled(BLOCK_SECONDS), MAX_BLOCK_SECONDS)
    workdir = tmp_path / "work"
    workdir.mkdir()
    if SHARED.is_dir():
        (tmp_path / "shared").symlink_to(SHARED, target_is_directory=True)
    if "memkv serve" in block.text or "990" in block.text:
        busy = [port for port in DOC_PORTS if not _port_free(port)]
        assert not busy, f"{block.name} uses the documented ports, but 127.0.0.1:{busy} is busy on this machine"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMKV_") or k == SEED_ENV}
    env.update(HOME=str(workdir), MEMKV_REPO=str(REPO), PYTHONUNBUFFERED="1",
               PATH=os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")]))
    script = _WRAPPER % block.text
    process = subprocess.Popen(["bash", "-c", script], cwd=workdir, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the block's shell and every server it started
        stdout, stderr = process.communicate()
        pytest.fail(f"{block.name} ran past {seconds:.0f} s\n--- stdout ---\n{stdout[-4000:]}\n"
                    f"--- stderr ---\n{stderr[-4000:]}")
    assert process.returncode == 0, (
        f"{block.name} failed with status {process.returncode}\n--- block ---\n{block.text}\n"
        f"--- stdout ---\n{stdout[-4000:]}\n--- stderr ---\n{stderr[-4000:]}")
