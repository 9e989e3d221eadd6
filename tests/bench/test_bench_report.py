"""memkv bench's report: every line labelled, and --html with plots of memkv against raw (issue 12)."""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path

import pytest

from memkv.bench.html import render_html
from memkv.cli.main import main
from memkv.errors import ErrorCode, MemkvError

ARGS = ["bench", "--backend", "file", "--sizes", "64KiB,128KiB", "--count", "2", "--rounds", "1", "--quiet"]


def test_text_report_labels_the_wall_time_and_html_has_both_plots(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "bench.html"
    assert main([*ARGS, "--dir", str(tmp_path / "d"), "--html", str(page)]) == 0
    out = capsys.readouterr()
    last = out.out.strip().splitlines()[-1]
    assert re.fullmatch(r"wall time: \d+\.\d s \(both paths, every round\)", last), last
    text = page.read_text(encoding="utf-8")
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', text)
    assert [alt for alt, _ in images] == ["throughput per block size", "latency per block size"]
    for _, data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    assert "wall time:" in text and "64.0 KiB" in text
    assert f"wrote {page}" in out.err


def test_html_without_matplotlib_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as when it is not installed
    report = {"backend": "file", "rounds": 1, "count": 1, "raw": "", "results": []}
    with pytest.raises(MemkvError) as caught:
        render_html(report, "")
    assert caught.value.code is ErrorCode.UNSUPPORTED and "[plot]" in caught.value.message
