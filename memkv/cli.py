"""The `memkv` command. Each subcommand is a module with `add_parser(subparsers)` and `run(args) -> int`.

To add one (serve, admin, doctor, conformance, plan), append its module name to SUBCOMMANDS.
A memkv error ends the command with `memkv: CODE: message` on stderr and exit status 2;
an operating-system error with `memkv: I/O error: ...` and status 1. Never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Protocol, cast

from .errors import MemkvError
from .version import __version__

SUBCOMMANDS: tuple[str, ...] = (
    "memkv.demo", "memkv.bench", "memkv.cli_serve", "memkv.cli_admin", "memkv.cli_doctor", "memkv.cli_conformance",
    "memkv.cli_completion",
    "memkv.plan.cli",
    "memkv.cli_fsck", "memkv.cli_torture",
    "memkv.cli_conformance_client",
)
EXIT_MEMKV_ERROR = 2
EXIT_IO_ERROR = 1
EXIT_INTERRUPTED = 130


class Subcommand(Protocol):
    def add_parser(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
        ...

    def run(self, args: argparse.Namespace) -> int: ...


def build_parser(modules: Sequence[str] = SUBCOMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memkv", description="memkv: a KV-cache block store for LLM inference")
    parser.add_argument("--version", action="version", version=f"memkv {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        module = cast(Subcommand, importlib.import_module(name))
        sub = module.add_parser(subparsers)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_MEMKV_ERROR
    try:
        return handler(args)
    except MemkvError as exc:
        print(f"memkv: {exc.code.name}: {exc.message}", file=sys.stderr)
        return EXIT_MEMKV_ERROR
    except OSError as exc:
        print(f"memkv: I/O error: {exc}", file=sys.stderr)
        return EXIT_IO_ERROR
    except KeyboardInterrupt:
        print("memkv: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
