"""An in-process fuzzer of the frame header and message parsers (random mutation, not coverage-guided).

A seed corpus of valid frames (every request shape the server parses: put/get items, keys,
results, sessions, lookups, capabilities, NIXL descriptors) is mutated (bit flips, byte
overwrites with boundary values, truncation, splices, duplicated slices, oversized JSON numbers).
Every input goes through parse_header, MetaReader and each reader a server or client applies.
A parser may refuse an input only with a memkv error; anything else is a crash.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

from ..blocks import BlockMeta, Limits
from ..errors import ErrorCode, MemkvError
from ..sessions import SessionInfo, SessionState
from ..transport import GetResult, ItemResult, LookupResult
from ..wire import messages as msg
from ..wire import records as rec
from ..wire.frames import HEADER_SIZE, Header, WireLimits, parse_header
from ..wire.opcodes import Opcode

LIMITS = Limits()
INTERESTING = [0, 1, 0x7F, 0x80, 0xFF]
NUMBERS = [b"0", b"-1", b"18446744073709551616", b"1e308", b"9" * 5000, b"-0.0", b"1e-400"]


def _seed_corpus() -> list[bytes]:
    keys = [bytes([i]) * 16 for i in range(3)]
    meta = BlockMeta(dtype="bf16", token_count=16).encode()
    info = SessionInfo("s1", SessionState.OPEN, tuple(keys), 60.0, 1e9, None, bytes(16))
    metas = [
        msg.encode_meta({}, b"".join(msg.pack_put_item(k, 4096, 7, meta) for k in keys), 3),
        msg.encode_meta({}, b"".join(msg.pack_get_item(k, 4096) for k in keys), 3),
        msg.encode_meta({"lease_ms": 100}, msg.pack_keys(keys), 3),
        msg.encode_meta({}, msg.pack_results([ItemResult(), ItemResult(ErrorCode.NOT_FOUND, "no")]), 2),
        msg.encode_meta({}, msg.pack_get_results([GetResult(length=10, checksum=3, meta=BlockMeta())]), 1),
        msg.encode_meta({}, msg.pack_flags([True, False]), 2),
        msg.encode_meta(rec.session_answer(info), msg.pack_keys(keys), 3),
        msg.encode_meta(rec.lookup_answer(LookupResult(2, "lease", 5.0))),
        msg.encode_meta({"profiles": ["core"], "spec_version": "1.0", "backend": "tcp", "limits": {}}),
        msg.encode_meta({}, msg.pack_nixl_put_item(keys[0], 4096, 8192, 0, 1, 5, meta), 1),
        msg.encode_meta({"namespace": "ns", "key_id": "k", "client_nonce": "00" * 16, "timestamp_ms": 1}),
    ]
    return [Header(Opcode.PUT, 1, len(m)).pack() + m for m in metas]


def _readers() -> list[Callable[[msg.MetaReader], Any]]:
    return [
        lambda r: r.put_items(LIMITS), lambda r: r.get_items(), lambda r: r.keys(), lambda r: r.results(),
        lambda r: r.get_results(LIMITS), lambda r: r.flags(), rec.session_from, rec.lookup_from,
        lambda r: msg.capabilities_from(r.args), lambda r: msg.nixl_descs(r, True, LIMITS),
        lambda r: r.stat_results([bytes(16)] * max(0, min(r.count, 256)), LIMITS),
    ]


def mutate(data: bytes, rng: random.Random, corpus: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(7)
        pos = rng.randrange(len(out)) if out else 0
        if choice == 0 and out:
            out[pos] ^= 1 << rng.randrange(8)
        elif choice == 1 and out:
            out[pos] = rng.choice(INTERESTING)
        elif choice == 2:
            del out[rng.randrange(len(out) + 1):]
        elif choice == 3:
            other = rng.choice(corpus)
            cut = rng.randrange(len(other) + 1)
            out[pos:] = other[cut:]
        elif choice == 4 and out:
            end = min(len(out), pos + rng.randint(1, 64))
            out[pos:pos] = out[pos:end] * rng.randint(1, 8)
        elif choice == 5:
            digits = str(json.dumps(rng.randrange(-10, 10))).encode()
            at = out.find(digits, HEADER_SIZE)
            if at >= 0:
                out[at : at + len(digits)] = rng.choice(NUMBERS)
        elif choice == 6 and len(out) >= 4:
            width = rng.choice([1, 2, 4, 8])
            at = rng.randrange(max(1, len(out) - width))
            out[at : at + width] = rng.choice([b"\xff" * width, b"\x00" * width, b"\x7f" + b"\xff" * (width - 1)])
    return bytes(out)


def run_one(data: bytes, readers: list[Callable[[msg.MetaReader], Any]]) -> None:
    """Parse `data` as a frame the way a server and a client would; memkv errors are refusals."""
    try:
        header = parse_header(data[:HEADER_SIZE], WireLimits())
    except MemkvError:
        header = None
    meta = data[HEADER_SIZE:] if header is None else data[HEADER_SIZE : HEADER_SIZE + header.meta_len]
    for read in readers:
        try:
            read(msg.MetaReader(meta, LIMITS.max_batch))
        except MemkvError:
            pass


def fuzz(inputs: int, seed: int = 0, max_crash_samples: int = 5) -> dict[str, Any]:
    rng = random.Random(seed)
    corpus = _seed_corpus()
    readers = _readers()
    crashes: dict[str, str] = {}
    crash_count = 0
    started = time.monotonic()
    for _ in range(inputs):
        data = mutate(rng.choice(corpus), rng, corpus)
        try:
            run_one(data, readers)
        except Exception as exc:
            crash_count += 1
            kind = f"{type(exc).__name__}: {str(exc)[:80]}"
            if len(crashes) < max_crash_samples and kind not in crashes:
                crashes[kind] = data[:256].hex()
    elapsed = time.monotonic() - started
    return {"scenario": "parser-fuzz", "inputs": inputs, "seed": seed, "crashes": crash_count,
            "crash_samples": crashes, "seconds": round(elapsed, 2),
            "inputs_per_second": round(inputs / elapsed) if elapsed else None}
