"""`memkv bench --html FILE`: the report as one self-contained HTML page with plots (matplotlib).

matplotlib is the optional extra `plot` (pip install '.[plot]'); without it --html says so.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from ..errors import Unsupported
from ..units import format_size


def _figure_png(report: dict[str, Any], metric: str) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a display
        from matplotlib import pyplot
    except ImportError:
        raise Unsupported("memkv bench --html needs matplotlib: pip install '.[plot]' (from a checkout)") from None
    rows = report["results"]
    figure, axes = pyplot.subplots(1, 2, figsize=(11, 4), sharey=metric != "gb_per_s")
    for axis, op in zip(axes, ("put", "get"), strict=True):
        mine = [r for r in rows if r["op"] == op and r["path"] == "memkv"]
        sizes = [r["size"] / 2**20 for r in mine]
        if metric == "gb_per_s":
            axis.plot(sizes, [r["memkv"]["gb_per_s"] for r in mine], "o-", label="memkv")
            axis.plot(sizes, [r["raw"]["gb_per_s"] for r in mine], "s--", label=f"raw ({report.get('raw', '')})")
            for peer in dict.fromkeys(r["path"] for r in rows if r.get("peer")):  # --compare, same run
                theirs = [r for r in rows if r["op"] == op and r["path"] == peer]
                axis.plot([r["size"] / 2**20 for r in theirs], [r["memkv"]["gb_per_s"] for r in theirs], "d:",
                          label=peer)
            limit = report.get("physical_limit")
            if limit:
                axis.axhline(limit["gb_per_s"], color="grey", linestyle="-.", label="loopback limit (iperf3)")
            axis.set_ylabel("GB/s")
        else:
            for path, style in (("memkv", "-"), ("raw", "--")):
                axis.plot(sizes, [r[path]["p50_ms"] for r in mine], "o" + style, label=f"{path} p50")
                axis.plot(sizes, [r[path]["p99_ms"] for r in mine], "^" + style, label=f"{path} p99")
            axis.set_ylabel("latency per block, ms")
        axis.set_xlabel("block size, MiB")
        axis.set_title(f"{op} ({report['backend']} backend)")
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    pyplot.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def render_html(report: dict[str, Any], text_report: str) -> str:
    throughput = _figure_png(report, "gb_per_s")
    latency = _figure_png(report, "latency")
    title = f"memkv bench --backend {report['backend']}"
    return "\n".join([
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1150px;margin:2em auto}pre{background:#f6f8fa;"
        "padding:1em;overflow-x:auto}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{report['rounds']} rounds x {report['count']} blocks per size, sizes "
        f"{html.escape(', '.join(format_size(s) for s in sorted({r['size'] for r in report['results']})))}; "
        "memkv and the raw path measured in the same run.</p>",
        "<h2>Throughput</h2>", f'<img alt="throughput per block size" src="data:image/png;base64,{throughput}">',
        "<h2>Latency</h2>", f'<img alt="latency per block size" src="data:image/png;base64,{latency}">',
        "<h2>Report</h2>", f"<pre>{html.escape(text_report)}</pre>",
        "</body></html>", ""])


def write_html(report: dict[str, Any], text_report: str, path: str) -> None:
    page = render_html(report, text_report)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
