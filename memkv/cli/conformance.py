"""`memkv conformance`: certify a target against the spec, requirement by requirement."""

from __future__ import annotations

import argparse
import sys

from .main import Subparsers


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "conformance", help="run the conformance suite against a target",
        description="Run the memkv conformance suite against a target and report per requirement.")
    parser.add_argument("--target", required=True,
                        help="a memkv.connect URL (file:///path, memkv+tcp://host:port) or module:factory[?k=v]")
    parser.add_argument("--profile", default="",
                        help="profiles to run, comma separated, or 'all' (default: the target's claimed profiles)")
    parser.add_argument("--report", metavar="DIR", default=None,
                        help="write results.json, junit.xml and report.html into DIR")
    parser.add_argument("--certify", action="store_true",
                        help="certification run: fixed example counts, the regression seed plus a fresh seed "
                             "(recorded in the report), no skips in claimed profiles")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the run (default: $MEMKV_CONFORMANCE_SEED when set, else a random one; "
                             "printed and recorded; replays a failure)")
    parser.add_argument("--max-shrink-time", type=float, default=60.0,
                        help="seconds Hypothesis may spend shrinking one failing example (default 60)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="stop after this many seconds; the report is still written, temporary stores removed")
    parser.add_argument("--examples", type=int, default=None, help="Hypothesis examples per property")
    parser.add_argument("--steps", type=int, default=None, help="steps per state-machine example")
    parser.add_argument("-k", dest="keyword", default=None, help="only checks matching this pytest -k expression")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def run(args: argparse.Namespace) -> int:
    from memkv.conformance.runner import Options
    from memkv.conformance.runner import run as run_suite

    options = Options(target=args.target, profiles=args.profile, report_dir=args.report, certify=args.certify,
                      seed=args.seed, examples=args.examples, steps=args.steps, keyword=args.keyword,
                      quiet=args.quiet, max_shrink_time=args.max_shrink_time, timeout=args.timeout)
    doc = run_suite(options)
    out = sys.stdout
    print(f"\nmemkv conformance {doc['suite']['version']} (spec {doc['spec_version']}), seed {doc['seed']}", file=out)
    print(f"target: {doc['target'].get('spec')}, checked against spec {doc['checked_against']} "
          f"(it declares {doc['declared_spec_version']})", file=out)
    for name, profile in doc["profiles"].items():
        if profile["selected"] and profile["requirements"]:
            claim = "claimed" if profile["claimed"] else "not claimed"
            print(f"  {name:9s} {profile['status'].upper():5s} ({claim}): {profile['pass']} pass, {profile['fail']} "
                  f"fail, {profile['error']} error, {profile['skip']} not run, {profile['excluded']} excluded"
                  + (f", {profile['not_applicable']} newer than declared" if profile["not_applicable"] else ""),
                  file=out)
    for req in doc["requirements"].values():
        if req["status"] in ("fail", "error") and req["failures"]:
            first = req["failures"][0]
            tag = "" if req["claimed"] else " (profile not claimed)"
            print(f"  {req['status'].upper()} {req['id']}{tag}: {first['message']} (expected {first['expected']}, "
                  f"got {first['actual']})"[:300], file=out)
    if doc.get("setup_error"):
        print(f"setup error (no check was run): {doc['setup_error']}", file=out)
    if doc.get("interrupted"):
        print(f"interrupted: {doc['interrupted']}", file=out)
    if doc["verdict"] not in ("CERTIFIED", "PASSED"):
        print(f"replay: --seed {doc['seed']}", file=out)
    print(f"verdict: {doc['verdict']}", file=out)
    if args.report:
        print(f"reports: {args.report}/results.json, junit.xml, report.html", file=out)
    return 0 if doc["verdict"] in ("CERTIFIED", "PASSED") else 1
