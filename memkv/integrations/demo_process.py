"""One engine process of `memkv demo --engine NAME`: `python -m memkv.integrations.NAME.demo store|load URL COUNT`.

The process stores or loads COUNT blocks of a prefix through the engine's real plug-in and prints
one line `RESULT {json}`, which the demo (and the contract tests) read back.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence

Step = Callable[[str, str, int], dict[str, object]]  # (store|load, url, count) -> what it did
RESULT_PREFIX = "RESULT "


def report_result(result: dict[str, object]) -> int:
    """Print what an engine process did for `result_of`; its exit status."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


def result_of(output: str) -> dict[str, object]:
    """The one `RESULT {json}` line of an engine process's output."""
    lines = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
    if len(lines) != 1:
        raise ValueError(f"expected one {RESULT_PREFIX.strip()} line, got {len(lines)}: {output[-2000:]}")
    result: dict[str, object] = json.loads(lines[0].removeprefix(RESULT_PREFIX))
    return result


def main(step: Step, argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or args[0] not in ("store", "load"):
        print("usage: python -m memkv.integrations.ENGINE.demo store|load URL COUNT", file=sys.stderr)
        return 2
    mode, url, count = args[0], args[1], int(args[2])
    return report_result(step(mode, url, count))
