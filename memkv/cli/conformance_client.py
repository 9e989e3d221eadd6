"""`memkv conformance-client`: certify a client library with the client checker (a scripted server)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from ..transport import Transport
from .main import Subparsers


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "conformance-client", help="certify a client library of the wire protocol against a scripted server",
        description="Runs memkv/conformance/client_checker.py: a scripted memkv server sends what the spec says a "
                    "client must handle (corrupted payloads, unknown codes, bad MACs, small limits).")
    parser.add_argument("--connect", default="memkv:connect", metavar="MODULE:FUNCTION",
                        help="the library's connect(url, namespace=..., key=...) (default memkv:connect)")
    return parser


def _connect_function(spec: str) -> Callable[..., Transport]:
    module, _, name = spec.partition(":")
    if not module or not name:
        raise SystemExit(f"--connect must be MODULE:FUNCTION, not {spec!r}")
    function: Callable[..., Transport] = getattr(importlib.import_module(module), name)
    return function


def run(args: argparse.Namespace) -> int:
    from memkv.conformance.client_checker import check_client

    connect = _connect_function(args.connect)
    results = check_client(lambda url, namespace, key: connect(url, namespace=namespace, key=key))
    for result in results:
        status = "PASS" if result.passed else "FAIL"
        print(f"  {status} {result.requirement}: {result.what}" + ("" if result.passed else f" ({result.detail})"))
    passed = all(r.passed for r in results)
    print(f"verdict: {'CERTIFIED' if passed else 'NOT CERTIFIED'} ({args.connect})", file=sys.stdout)
    return 0 if passed else 1
