"""The `memkv` command.

Each subcommand is a module of this package with `add_parser(subparsers)` and `run(args) -> int`;
COMMANDS maps the command's name to its module. Only the module of the command being run is
imported (`memkv serve` never loads the conformance suite, `memkv --version` loads none), so a
subcommand module may import what its command needs at module level. To add a command, add its
module here and to COMMANDS.

A memkv error ends the command with `memkv: CODE: message` on stderr and exit status 2;
an operating-system error with `memkv: I/O error: ...` and status 1. Never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Protocol, TypeAlias, cast

from ..errors import MemkvError
from ..version import __version__

COMMANDS: dict[str, str] = {
    "demo": "memkv.cli.demo",
    "bench": "memkv.cli.bench",
    "serve": "memkv.cli.serve",
    "admin": "memkv.cli.admin",
    "doctor": "memkv.cli.doctor",
    "conformance": "memkv.cli.conformance",
    "completion": "memkv.cli.completion",
    "plan": "memkv.cli.plan",
    "fsck": "memkv.cli.fsck",
    "torture": "memkv.cli.torture",
    "conformance-client": "memkv.cli.conformance_client",
}
# What every subcommand module's add_parser(subparsers) receives.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
EXIT_MEMKV_ERROR = 2
EXIT_IO_ERROR = 1
EXIT_INTERRUPTED = 130


class Subcommand(Protocol):
    def add_parser(self, subparsers: Subparsers) -> argparse.ArgumentParser:
        ...

    def run(self, args: argparse.Namespace) -> int: ...


def build_parser(commands: Sequence[str] = tuple(COMMANDS)) -> argparse.ArgumentParser:
    """The parser with the given commands' subparsers (every command by default: help, completion)."""
    parser = argparse.ArgumentParser(prog="memkv", description="memkv: a KV-cache block store for LLM inference")
    parser.add_argument("--version", action="version", version=f"memkv {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in commands:
        module = cast(Subcommand, importlib.import_module(COMMANDS[name]))
        sub = module.add_parser(subparsers)
        sub.set_defaults(handler=module.run)
    return parser


def commands_needed(argv: Sequence[str]) -> tuple[str, ...]:
    """The commands whose modules parsing `argv` needs: the one named, none for --version, else all."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    if first in COMMANDS:
        return (first,)
    if first is None and argv and all(arg == "--version" for arg in argv):
        return ()
    return tuple(COMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(commands_needed(arguments))
    args = parser.parse_args(arguments)
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
