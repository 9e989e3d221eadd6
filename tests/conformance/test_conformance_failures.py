"""Usable failures: a failing run names requirement, seed and reproduction; a run cut short still
reports and cleans up; a faulty target's spec reopens the same data in a child process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from memkv.conformance.faulty import defect
from memkv.conformance.runner import Options, run
from memkv.transport import PutItem


def test_a_run_cut_by_its_timeout_still_reports_and_removes_its_stores(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    report = tmp_path / "report"
    doc = run(Options(target="file://", select=("MKV-SES-001",), examples=200, steps=50, seed=5, quiet=True,
                      stream=io.StringIO(), report_dir=str(report), timeout=4.0))
    assert doc["interrupted"] == "timeout after 4.0 s"
    assert doc["verdict"] == "FAILED"
    assert json.loads((report / "results.json").read_text())["interrupted"] == "timeout after 4.0 s"
    assert (report / "junit.xml").exists() and (report / "report.html").exists()
    assert list(scratch.iterdir()) == []


@pytest.mark.requirement("MKV-PRO-001")
def test_a_failure_names_requirement_seed_and_shrunk_steps() -> None:
    doc = run(Options(target="memkv.conformance.faulty:defect?name=lookup_stops_at_eight", select=("MKV-OPS-006",),
                      seed=77, examples=8, steps=20, quiet=True, stream=io.StringIO(), max_shrink_time=5))
    assert doc["seed"] == 77 and doc["replay"] == "--seed 77"
    failures = doc["requirements"]["MKV-OPS-006"]["failures"]
    assert failures and all(f["requirement"] == "MKV-OPS-006" for f in failures)
    assert any("lookup" in f["reproduction"] for f in failures), failures


def test_faulty_target_spec_reopens_the_same_data_in_a_child_process() -> None:
    target = defect("flips_byte_of_large_blocks")
    key = bytes(range(16))
    try:
        t = target.connect("spec-check")
        assert t.put([PutItem(key, b"kept across processes")])[0].ok
        target.stop()
        code = ("from memkv.conformance.target import load_target\n"
                f"t = load_target({target.spec!r}).connect('spec-check')\n"
                f"print(t.exists([{key!r}])[0])")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
        assert out.stdout.strip() == "True", out.stderr
    finally:
        target.close()
