"""The embedded file backend is CERTIFIED for every profile it claims (core, sessions, durable).

The checks ran just before this test, as `memkv/conformance/checks/...::test_x[file]` (pyproject.toml's
`memkv_backends`, memkv/conformance/per_backend.py); this reads the certification made of their results.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from memkv.conformance.per_backend import Certification
from memkv.conformance.runner import REGRESSION_SEED


@pytest.mark.requirement("MKV-PRO-001")
@pytest.mark.memkv_backend("file")
def test_file_backend_is_certified(memkv_certification: Certification) -> None:
    doc = memkv_certification.doc
    assert doc["verdict"] == "CERTIFIED", doc["blocking"]
    assert doc["claimed_profiles"] == ["core", "durable", "sessions"]
    assert doc["regression_seed"] == REGRESSION_SEED and isinstance(doc["seed"], int)
    for name in ("core", "sessions", "durable"):
        assert doc["profiles"][name]["status"] == "pass", doc["profiles"][name]
        assert doc["profiles"][name]["skip"] == 0
    assert all("[file]" not in t["nodeid"] and "-file]" not in t["nodeid"] for t in doc["tests"])
    report = memkv_certification.report_dir
    results = json.loads((report / "results.json").read_text())
    assert results["verdict"] == "CERTIFIED"
    assert results["requirements"]["MKV-OPS-001"]["status"] == "pass"
    junit = ET.parse(report / "junit.xml").getroot()
    names = [case.get("name", "") for case in junit.iter("testcase")]
    assert names and all(name.startswith("[MKV-") for name in names)
    html = (report / "report.html").read_text()
    assert "CERTIFIED" in html and "MKV-SES-004" in html
