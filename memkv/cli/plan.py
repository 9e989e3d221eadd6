"""`memkv plan`: what a KV-cache tier saves on a recorded workload, with every assumption shown.

Replays a Mooncake-format JSONL trace (or an access log of `memkv serve --access-log`) through
the store's own eviction code at a given capacity, then prices the prefill it avoids against
the storage it needs. See docs/plan.md for the model, the formulas and the sources.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import InvalidArgument
from ..eviction import POLICIES
from ..plan.catalog import model_names
from ..plan.planner import PlanOptions, make_plan
from ..plan.report import format_plan
from ..plan.simulate import SimConfig
from ..plan.workload import TRACE_BLOCK_TOKENS, TRACE_NAMES, find_trace, read_trace
from ..units import parse_size
from .main import Subparsers


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "plan", help="what caching saves on a workload trace: hit ratios, dollars, the tier to buy",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trace", help=f"Mooncake JSONL trace or access log (default: {TRACE_NAMES[0]} in "
                                   "./shared/traces or ../shared/traces)")
    p.add_argument("--limit", type=int, help="replay only the first N requests")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--capacity", type=parse_size,
                      help="cache size of the whole deployment, e.g. 4TB (full-size KV blocks of --model)")
    size.add_argument("--capacity-blocks", type=int, help="cache size in trace blocks (default: unbounded)")
    p.add_argument("--policy", choices=POLICIES, default="chain", help="eviction order (default chain, the store's)")
    p.add_argument("--ttl", type=float, help="seconds a block stays after its last use (default: no TTL)")
    p.add_argument("--pause", type=float, default=0.0, help="human pause in seconds added before every reuse (TTL)")
    p.add_argument("--agents", type=int, default=1, help="agents replaying the workload side by side")
    p.add_argument("--shared-blocks", type=int, default=1,
                   help="leading blocks of every chain that the agents share (default 1, the system prompt)")
    p.add_argument("--block-tokens", type=int, default=TRACE_BLOCK_TOKENS, help="tokens per trace block (512)")
    p.add_argument("--model", default="llama-3.1-70b", choices=model_names(), help="model: KV bytes per token")
    p.add_argument("--gpu", default="h100", help="GPU class of the catalog")
    p.add_argument("--gpu-price", type=float, help="$ per GPU-hour (default: the catalog's)")
    p.add_argument("--prefill-rate", type=float, help="prefill tokens/s per GPU (default: the catalog's)")
    p.add_argument("--decode-rate", type=float, help="decode tokens/s per GPU (default: the catalog's)")
    p.add_argument("--dram-price", type=float, help="$ per TB of DRAM bought (default: the catalog's)")
    p.add_argument("--nvme-price", type=float, help="$ per TB of NVMe bought (default: the catalog's)")
    load = p.add_mutually_exclusive_group()
    load.add_argument("--scale", type=float, help="the deployment has this many times the trace's traffic")
    load.add_argument("--gpus", type=float, help="scale the traffic until it keeps this many GPUs busy")
    p.add_argument("--tier", choices=("dram", "nvme"), default="dram", help="tier of the configured cache")
    p.add_argument("--sweep", type=int, default=6, help="capacities in the sweep, per policy (0: none)")
    p.add_argument("--no-sensitivity", action="store_true", help="skip the sensitivity table")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--html", metavar="PATH", help="also write an HTML report with plots (needs matplotlib)")
    return p


def run(args: argparse.Namespace) -> int:
    trace = args.trace or find_trace(TRACE_NAMES[0])
    if trace is None:
        raise InvalidArgument("no trace given and none found in ./shared/traces or ../shared/traces; use --trace")
    if not os.path.isfile(trace):
        raise InvalidArgument(f"trace file {trace} does not exist")
    prices = {name: value for name, value in (("dram", args.dram_price), ("nvme", args.nvme_price))
              if value is not None}
    simulation = SimConfig(args.capacity_blocks, args.policy, args.ttl, args.pause, args.agents, args.shared_blocks,
                           args.block_tokens)
    opts = PlanOptions(
        simulation=simulation, capacity_bytes=args.capacity, model=args.model, gpu=args.gpu,
        gpu_price=args.gpu_price, prefill_rate=args.prefill_rate, decode_rate=args.decode_rate, tier_prices=prices,
        scale=args.scale, gpus=args.gpus, tier=args.tier, sweep_points=args.sweep,
        sensitivity=not args.no_sensitivity)
    requests = list(read_trace(trace, limit=args.limit, block_tokens=args.block_tokens))
    plan = make_plan(requests, opts, {"trace": os.path.abspath(trace)})
    text = format_plan(plan)
    if args.html:
        from ..plan.html import render_html

        page = render_html(plan, text)
        with open(args.html, "w", encoding="utf-8") as f:
            f.write(page)
    if args.json:
        json.dump(plan, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(text)
    return 0


__all__ = ["add_parser", "run"]
