"""Child processes of the suite (durability and concurrency checks). Talks JSON lines on stdout.

    python -m memkv.conformance.worker open --target SPEC
    python -m memkv.conformance.worker writer --target SPEC --namespace NS --seed N --count N --flush-after N
    python -m memkv.conformance.worker history --target SPEC --namespace NS --client N --seed N --ops N --keys N
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

from memkv.errors import MemkvError
from memkv.transport import PutItem

from .support import payload
from .target import load_target


def crash_key(seed: int, i: int) -> bytes:
    return (seed * 1_000_003 + i).to_bytes(16, "big")


def crash_size(i: int, flush_after: int) -> int:
    return 4096 + 1000 * i if i < flush_after else 1024 * 1024 + 4096 * i


def _emit(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def cmd_open(args: argparse.Namespace) -> int:
    try:
        target = load_target(args.target)
        transport = target.connect(args.namespace)
        transport.close()
        target.close()
    except MemkvError as exc:
        _emit(code=exc.code.name, message=exc.message)
        return 0
    _emit(code="OK", message="")
    return 0


def cmd_writer(args: argparse.Namespace) -> int:
    target = load_target(args.target)
    t = target.connect(args.namespace)
    _emit(event="ready", pid=os.getpid())
    for i in range(args.count):
        if i == args.flush_after:
            target.flush(t)
            _emit(event="flushed", n=i)
        key = crash_key(args.seed, i)
        _emit(event="invoke", i=i)
        t.put([PutItem(key, payload(args.seed * 1000 + i, crash_size(i, args.flush_after)))])[0].raise_for_status()
        _emit(event="ok", i=i)
    _emit(event="done")
    time.sleep(3600)
    return 0


def history_payload(client: int, seq: int, key_index: int) -> bytes:
    return payload((client << 40) | (seq << 8) | key_index, 2048 + 4096 * (seq % 3))


def cmd_history(args: argparse.Namespace) -> int:
    """Random ops on a few shared keys; one JSON line per invoke and per completion."""
    target = load_target(args.target)
    t = target.connect(args.namespace)
    rng = random.Random(args.seed * 7919 + args.client)
    keys = [(b"memkv-conc-" + bytes([0, 0, 0, 0, i]))[:16] for i in range(args.keys)]
    for seq in range(args.ops):
        k = rng.randrange(args.keys)
        op = rng.choices(["put", "get", "invalidate"], weights=[4, 8, 1])[0]
        start = time.monotonic()
        try:
            if op == "put":
                data = history_payload(args.client, seq, k)
                res = t.put([PutItem(keys[k], data)])[0]
                value: object = {"seed": (args.client << 40) | (seq << 8) | k, "len": len(data)}
                status = res.status.name
            elif op == "get":
                buf = bytearray(2048 + 4096 * 3)
                got = t.get_into([keys[k]], [buf])[0]
                status = got.status.name
                value = bytes(buf[: got.length]).hex() if got.ok else None
            else:
                value = t.invalidate_keys([keys[k]])
                status = "OK"
        except MemkvError as exc:
            status, value = exc.code.name, None
        except Exception as exc:
            status, value = "UNKNOWN", f"{type(exc).__name__}: {exc}"
        _emit(client=args.client, seq=seq, op=op, key=k, start=start, end=time.monotonic(), status=status,
              value=value)
    t.close()
    target.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memkv.conformance.worker")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_open = sub.add_parser("open")
    p_open.add_argument("--target", required=True)
    p_open.add_argument("--namespace", default="memkv-conformance-probe")
    p_writer = sub.add_parser("writer")
    p_writer.add_argument("--target", required=True)
    p_writer.add_argument("--namespace", required=True)
    p_writer.add_argument("--seed", type=int, default=1)
    p_writer.add_argument("--count", type=int, default=40)
    p_writer.add_argument("--flush-after", type=int, default=8)
    p_hist = sub.add_parser("history")
    p_hist.add_argument("--target", required=True)
    p_hist.add_argument("--namespace", required=True)
    p_hist.add_argument("--client", type=int, required=True)
    p_hist.add_argument("--seed", type=int, default=1)
    p_hist.add_argument("--ops", type=int, default=200)
    p_hist.add_argument("--keys", type=int, default=4)
    args = parser.parse_args(argv)
    handler = {"open": cmd_open, "writer": cmd_writer, "history": cmd_history}[args.cmd]
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
