"""`memkv plan --html`: the report with plots, made with matplotlib (the optional extra `plot`)."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from ..errors import Unsupported

INSTALL_HINT = "pip install 'memkv[plot]'  (matplotlib>=3.8)"


def _figure_png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def render_html(plan: dict[str, Any], text: str) -> str:
    """A self-contained HTML page: the text report and two plots as inline PNG images."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise Unsupported(f"--html needs matplotlib: {INSTALL_HINT}") from None
    images = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for policy in sorted({row["policy"] for row in plan["sweep"]}):
        rows = [r for r in plan["sweep"] if r["policy"] == policy]
        ax.plot([r["capacity_bytes"] / 1e12 for r in rows], [r["prefix_hit_ratio"] for r in rows], marker="o",
                label=f"{policy}: prefix hit")
        ax.plot([r["capacity_bytes"] / 1e12 for r in rows], [r["block_hit_ratio"] for r in rows], linestyle="--",
                label=f"{policy}: block hit")
    ax.set_xscale("log")
    ax.set_xlabel("cache capacity (TB of full-size KV blocks)")
    ax.set_ylabel("hit ratio")
    ax.set_title("hit ratio against capacity")
    ax.legend()
    images.append(_figure_png(fig))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    low, high = 1.0, 6.0
    prices = [low + (high - low) * i / 20 for i in range(21)]
    e = plan["economics"]
    price = next(a["value"] for a in plan["assumptions"] if a["name"] == "usd_per_gpu_hour")
    for policy in sorted({row["policy"] for row in plan["sweep"]}):
        best = max((r for r in plan["sweep"] if r["policy"] == policy), key=lambda r: r["capacity_bytes"])
        per_dollar = best["gpu_usd_per_year"] / price
        ax.plot(prices, [per_dollar * p for p in prices], label=f"{policy}, largest swept capacity")
    per_dollar_main = e["usd_per_year"] / price
    ax.plot(prices, [per_dollar_main * p - e["storage_usd_per_year"] for p in prices], linestyle="--",
            label=f"{plan['policy']}, configured cache, net of storage")
    ax.set_xlabel("GPU price ($/GPU-hour)")
    ax.set_ylabel("saved per year ($)")
    ax.set_title("savings against GPU price")
    ax.legend()
    images.append(_figure_png(fig))
    plt.close(fig)
    body = "".join(f'<p><img alt="plot" src="data:image/png;base64,{img}"></p>' for img in images)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>memkv plan</title></head><body>"
            f"<h1>memkv plan</h1>{body}<pre>{html.escape(text)}</pre></body></html>")


__all__ = ["INSTALL_HINT", "render_html"]
