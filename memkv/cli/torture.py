"""`memkv torture`: the reliability campaign (see memkv.torture and docs/reliability.md).

Exit status: 0 when every scenario reports 0 failures, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..torture.campaign import SCENARIOS, Settings
from ..torture.campaign import run as run_campaign
from .main import Subparsers


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "torture", help="reliability campaign: fault sweep, power cuts, kill -9 loop, fuzzing, soak",
        description="Run the reliability campaign and print (or write) its JSON report. Short settings by "
        "default (seconds; what CI runs); --full for the campaign's figures (50 crash cycles, 1M parser "
        "inputs, 256 connections for 7 minutes). Every count can be set on its own.")
    parser.add_argument("--scenario", action="append", choices=[*SCENARIOS, "all"],
                        help="scenario to run (repeatable; default all)")
    parser.add_argument("--full", action="store_true", help="the campaign's full settings")
    parser.add_argument("--crash-cycles", type=int, help="kill -9 cycles under load")
    parser.add_argument("--power-cuts", type=int, help="simulated power cuts per I/O engine")
    parser.add_argument("--fuzz-inputs", type=int, help="inputs of the in-process parser fuzzer")
    parser.add_argument("--socket-frames", type=int, help="mutated frames sent to a live server")
    parser.add_argument("--connections", type=int, help="connections of the soak")
    parser.add_argument("--soak-seconds", type=float, help="length of the soak")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", help="where stores are made (default: the temp directory)")
    parser.add_argument("--json", metavar="PATH", help="write the report here instead of stdout")
    return parser


def run(args: argparse.Namespace) -> int:
    settings = Settings.full() if args.full else Settings()
    for name in ("crash_cycles", "power_cuts", "fuzz_inputs", "socket_frames", "connections", "soak_seconds"):
        value = getattr(args, name)
        if value is not None:
            if value < 0:
                print(f"memkv torture: --{name.replace('_', '-')} must not be negative", file=sys.stderr)
                return 2
            setattr(settings, name, value)
    settings.seed = args.seed
    chosen = args.scenario or ["all"]
    scenarios = list(SCENARIOS) if "all" in chosen else list(dict.fromkeys(chosen))
    report = run_campaign(scenarios, settings, args.workdir,
                          progress=lambda line: print(f"memkv torture: {line}", file=sys.stderr, flush=True))
    text = json.dumps(report, indent=2)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        print(f"memkv torture: {report['failures']} failures; report in {args.json}")
    else:
        print(text)
    return 0 if report["failures"] == 0 else 1
