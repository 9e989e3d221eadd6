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


def test_html_throughput_plot_shows_the_compared_peers_and_the_loopback_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.axes import Axes

    labels: list[str] = []
    for name in ("plot", "axhline"):
        real = getattr(Axes, name)

        def recording(self: Axes, *args: object, real: object = real, **kwargs: object) -> object:
            labels.append(str(kwargs.get("label", "")))
            return real(self, *args, **kwargs)  # type: ignore[operator]

        monkeypatch.setattr(Axes, name, recording)

    def row(size: int, op: str, path: str, rate: float) -> dict[str, object]:
        measured = {"gb_per_s": rate, "p50_ms": 1.0, "p99_ms": 2.0}
        return {"size": size, "op": op, "path": path, "memkv": measured, "raw": measured, "ratio": 1.0,
                "peer": path != "memkv"}

    rows = [row(size, op, path, 1.0) for size in (2 << 20, 16 << 20) for op in ("put", "get")
            for path in ("memkv", "redis")]
    report = {"backend": "tcp", "rounds": 1, "count": 1, "raw": "socket", "results": rows,
              "physical_limit": {"gb_per_s": 2.5, "what": "iperf3"}}
    render_html(report, "")
    assert labels.count("redis") == 2 and labels.count("loopback limit (iperf3)") == 2  # put and get
    assert labels.count("memkv") == 2
