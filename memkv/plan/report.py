"""The plan as readable text (the JSON form is the dict itself)."""

from __future__ import annotations

from typing import Any

from ..units import format_size


def _usd(value: float) -> str:
    return f"${value:,.0f}"


def _months(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} months"


def format_plan(p: dict[str, Any]) -> str:
    t, e, r, c = p["trace"], p["economics"], p["recommendation"], p["claim"]
    cap = "unbounded" if p["capacity_blocks"] is None else f"{p['capacity_blocks']:,} blocks"
    lines = [
        f"memkv plan: {t.get('trace', 'trace')}",
        f"  workload     {t['requests']:,} requests over {t['duration_s']:,.0f} s, {t['input_tokens']:,} input tokens; "
        f"an unbounded cache serves {t['unbounded_block_hit_ratio']:.1%} of block references",
        f"  cache        {cap} ({format_size(int(e['capacity_bytes']))} of {e['tier']}), policy {p['policy']}"
        + (f", TTL {p['ttl_s']:g} s" if p["ttl_s"] else "") + (f", pause {p['pause_s']:g} s" if p["pause_s"] else "")
        + (f", {p['agents']} agents" if p["agents"] > 1 else ""),
        f"  hits         block {p['block_hit_ratio']:.2%}, prefix {p['prefix_hit_ratio']:.2%}; "
        f"{p['evictions']:,} evictions, {p['expirations']:,} expirations",
        f"  prefill      {p['tokens_avoided']:,} of {p['tokens_total']:,} input tokens not recomputed "
        f"({e['recompute_share']:.1%} of all GPU time)",
        f"  bytes        {format_size(int(e['bytes_reloaded']))} reloaded in all, "
        f"{format_size(int(e['reload_bytes_per_s']))}/s on average "
        f"(blocks of {format_size(e['block_bytes'])})",
        f"  savings      {e['gpus_freed']:.2f} of {e['gpus_busy']:.1f} GPUs freed = {e['gpu_hours_per_year']:,.0f} "
        f"GPU-hours = {_usd(e['usd_per_year'])}/year; storage {_usd(e['storage_usd_per_year'])}/year; "
        f"net {_usd(e['net_usd_per_year'])}/year; payback {_months(e['payback_months'])}",
        f"  bandwidth    reload beats recompute above {e['reload_bar_bytes_per_s_per_gpu'] / 1e9:.2f} GB/s per GPU; "
        f"{e['tier']} gives {(e['bandwidth_per_gpu_bytes_per_s'] or 0) / 1e9:.2f} GB/s per GPU",
        f"  recommend    {r['tier']}: {r['reason']}",
        "",
        "  tier         capacity      prefix hit   saved $/year   storage $/year   net $/year   payback",
    ]
    for tier in p["tiers"]:
        size = format_size(int(tier["capacity_bytes"]))
        lines.append(f"  {tier['tier']:<12} {size:>12}  {tier['prefix_hit_ratio']:>10.1%}"
                     f"   {_usd(tier['usd_per_year']):>12}   {_usd(tier['storage_usd_per_year']):>14}"
                     f"   {_usd(tier['net_usd_per_year']):>10}   {_months(tier['payback_months'])}")
    if p["sensitivity"]:
        lines += ["", "  sensitivity (net $/year of the configured cache when one assumption moves):"]
        for s in p["sensitivity"]:
            lines.append(f"    {s['assumption']:<18} {s['low']:>8} -> {_usd(s['net_usd_per_year_low']):>12}   "
                         f"{s['high']:>8} -> {_usd(s['net_usd_per_year_high']):>12}   "
                         f"swing {_usd(s['swing_usd_per_year'])}")
    lines += ["", f"  the claim    {c['gpus']} GPUs from {c['utilization_before']:.0%} to {c['utilization_after']:.0%} "
                  f"utilization free {c['gpus_freed']:.1f} GPUs = {_usd(c['usd_per_year'])}/year at "
                  f"${c['usd_per_gpu_hour']:g}/GPU-hour: it needs the cache to remove {c['required_share']:.1%} "
                  "of all GPU time"]
    for w in c["workloads"]:
        lines.append(f"    {'holds' if w['holds'] else 'FAILS':<6} {w['workload']}: removes {w['recompute_share']:.1%} "
                     f"-> {_usd(w['usd_per_year'])}/year")
    if p["sweep"]:
        lines += ["", "  capacity sweep (prefix hit ratio):"]
        for row in p["sweep"]:
            size = format_size(int(row["capacity_bytes"]))
            lines.append(f"    {row['policy']:<6} {row['capacity_blocks']:>9,} blocks {size:>12}"
                         f"  block {row['block_hit_ratio']:6.1%}  prefix {row['prefix_hit_ratio']:6.1%}"
                         f"  {_usd(row['gpu_usd_per_year']):>12}/year")
    lines += ["", "  assumptions (docs/plan.md; override on the command line):"]
    for a in p["assumptions"]:
        value = f"{a['value']:,.4g}" if isinstance(a["value"], float) else str(a["value"])
        lines.append(f"    {a['name']:<26} {value:>14} {a['unit']:<12} {a['source']}")
    return "\n".join(lines)


__all__ = ["format_plan"]
