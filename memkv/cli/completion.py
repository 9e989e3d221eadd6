"""`memkv completion bash|zsh|tcsh`: print a shell completion script for every memkv command and flag."""

from __future__ import annotations

import argparse

import shtab

from .main import Subparsers

SHELLS = ("bash", "zsh", "tcsh")


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "completion", help="print a shell completion script",
        description="Print a completion script for memkv's commands and flags, e.g. "
                    "`memkv completion bash > ~/.local/share/bash-completion/completions/memkv`, or "
                    "`eval \"$(memkv completion bash)\"` in ~/.bashrc.")
    p.add_argument("shell", choices=SHELLS)
    return p


def run(args: argparse.Namespace) -> int:
    from .main import build_parser

    print(shtab.complete(build_parser(), shell=args.shell))
    return 0
