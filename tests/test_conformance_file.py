"""The embedded file backend is CERTIFIED for every profile it claims (core, sessions, durable)."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from report_dirs import report_dir

from memkv.conformance.runner import REGRESSION_SEED, Options, run


@pytest.mark.requirement("MKV-PRO-001")
def test_file_backend_is_certified(tmp_path: Path) -> None:
    store = tmp_path / "store"
    report = report_dir(tmp_path, "file")
    stream = io.StringIO()
    doc = run(Options(target=f"file://{store}", certify=True, report_dir=str(report), stream=stream))
    print(stream.getvalue()[-3000:])
    assert doc["verdict"] == "CERTIFIED", doc["blocking"]
    assert doc["claimed_profiles"] == ["core", "durable", "sessions"]
    assert doc["regression_seed"] == REGRESSION_SEED and isinstance(doc["seed"], int)
    for name in ("core", "sessions", "durable"):
        assert doc["profiles"][name]["status"] == "pass", doc["profiles"][name]
        assert doc["profiles"][name]["skip"] == 0
    results = json.loads((report / "results.json").read_text())
    assert results["verdict"] == "CERTIFIED"
    assert results["requirements"]["MKV-OPS-001"]["status"] == "pass"
    junit = ET.parse(report / "junit.xml").getroot()
    names = [case.get("name", "") for case in junit.iter("testcase")]
    assert names and all(name.startswith("[MKV-") for name in names)
    html = (report / "report.html").read_text()
    assert "CERTIFIED" in html and "MKV-SES-004" in html
    assert "[" in stream.getvalue() and "PASS" in stream.getvalue()  # progress lines while it runs
