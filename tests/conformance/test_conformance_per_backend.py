"""The checks run per backend as named tests: a broken requirement fails as the check itself, on the
backend that broke it, and the certification of each backend comes from the same results."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from memkv.conformance.per_backend import backend_named
from memkv.conformance.runner import CHECKS_DIR

ROOT = Path(__file__).resolve().parents[2]
CHECK = "test_blocks.py::test_lookup_longest_present_prefix"


@pytest.mark.requirement("MKV-PRO-001")
def test_a_broken_requirement_fails_as_the_check_on_its_backend(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    env = os.environ | {"MEMKV_CONFORMANCE_REPORTS": str(reports)}
    run = subprocess.run(
        # -P: the checkout must not shadow the installed memkv whose checks CHECKS_DIR names (tox)
        [sys.executable, "-P", "-m", "pytest", str(CHECKS_DIR / CHECK), "tests/conformance/test_conformance_file.py",
         "-p", "no:cacheprovider", "-rA", "--memkv-backends",
         "file,faulty=memkv.conformance.faulty:defect?name=lookup_counts_present_keys",
         "--memkv-seed", "7", "--basetemp", str(tmp_path / "pytest")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = run.stdout
    assert run.returncode == 1, out[-3000:]
    # the installed checks (tox installs memkv), so the node id's folder depends on where
    assert re.search(rf"^PASSED \S*{re.escape(CHECK)}\[file\]$", out, re.M), out[-3000:]
    assert re.search(rf"^FAILED \S*{re.escape(CHECK)}\[faulty\]", out, re.M) and "[MKV-OPS-006]" in out, out[-3000:]
    assert "seed 7 (replay: --memkv-seed 7)" in out
    # one check of many: the file backend's certification says what is missing, it does not pass
    assert "FAILED tests/conformance/test_conformance_file.py::test_file_backend_is_certified" in out
    faulty = json.loads((reports / "faulty" / "results.json").read_text())
    assert faulty["verdict"] == "NOT CERTIFIED" and faulty["seed"] == 7
    assert faulty["requirements"]["MKV-OPS-006"]["status"] == "fail"
    [test] = faulty["tests"]
    assert test["nodeid"] == f"conformance/checks/{CHECK}"  # as `memkv conformance` names it
    file = json.loads((reports / "file" / "results.json").read_text())
    assert file["requirements"]["MKV-OPS-006"]["status"] == "pass"


def test_certification_without_the_checks_is_an_explicit_skip(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-P", "-m", "pytest", "tests/conformance/test_conformance_file.py",
                          "-p", "no:cacheprovider", "-rs", "--memkv-backends", "file",
                          "--basetemp", str(tmp_path / "pytest")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "SKIPPED" in run.stdout and "the conformance checks were not collected in this run" in run.stdout


def test_backends_are_named_or_given_as_name_and_target() -> None:
    assert backend_named("tcp").target == "memkv-serve"
    named = backend_named("mine=memkv.conformance.faulty:defect?name=x")
    assert (named.name, named.target) == ("mine", "memkv.conformance.faulty:defect?name=x")
    with pytest.raises(pytest.UsageError, match="unknown memkv backend"):
        backend_named("redis")
    with pytest.raises(pytest.UsageError, match="NAME=TARGET"):
        backend_named("file:///x?capacity=1")
