"""`memkv demo`: replay a multi-agent workload against an embedded store and report what it saved.

Each request's `hash_ids` is a prefix chain of 512-token blocks; block keys are
`key_from_sequence_hash(fingerprint, hash_id)`. Per request: look up the longest stored prefix
under a short lease, reload it (every byte checked: a payload is a pure function of its key),
store the missing blocks (the prefill the engine had to do), and drive the agent's session:
open, append, fork, suspend for a pause (pinning its blocks) and resume, close.

Payloads are scaled down: a 512-token block of a 70B model is 160 MiB of KV, too big for a
laptop demo, so each block is stored as `--block-size` bytes (default 2 MiB) and the report
gives the full-size KV bytes separately. Pauses are simulated by ordering, never by sleeping.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..bench.progress import Progress
from ..blocks import GiB, MiB
from ..buffers import aligned_buffer
from ..connect import DEFAULT_DATA_DIR, connect
from ..errors import ErrorCode, InvalidArgument, MemkvError
from ..keys import key_from_sequence_hash, model_fingerprint
from ..plan.catalog import assumptions as plan_assumptions
from ..plan.catalog import model_names
from ..plan.economics import prefill_value
from ..plan.workload import (
    TRACE_BLOCK_TOKENS,
    TRACE_NAMES,
    TraceRequest,
    Turn,
    close_order,
    find_trace,
    plan_sessions,
    read_trace,
    select_sessions,
    synthetic_trace,
)
from ..transport import PutItem, Transport
from ..units import format_size, parse_size
from .main import Subparsers

NAMESPACE = "demo"
DEFAULT_CAPACITY = 2 * GiB
DEFAULT_BLOCK_SIZE = 2 * MiB
DEFAULT_REQUESTS = 200
SESSION_TTL_S = 3600.0
PAUSE_TTL_S = 900.0
LEASE_MS = 30_000
IO_BATCH = 16
"""Blocks per put/get call; also the number of aligned staging buffers of each kind."""


@dataclasses.dataclass(frozen=True, slots=True)
class ModelSpec:
    layers: int
    kv_width: int
    """Per layer and token, K or V elements (kv_heads x head_dim; the MLA latent for DeepSeek)."""
    kv_tensors: int
    """2 for K and V; 1 for an MLA latent."""
    prefill_tokens_per_s: float
    prefill_source: str
    bytes_per_element: int = 2

    @property
    def bytes_per_token(self) -> int:
        return self.kv_tensors * self.layers * self.kv_width * self.bytes_per_element


def _model_spec(name: str) -> ModelSpec:
    """A model of the planner's economics catalog (memkv/plan/catalog.yaml; sources in docs/plan.md)."""
    a = plan_assumptions(name)
    m = a.model
    return ModelSpec(m.layers, m.kv_width, m.kv_tensors, a.prefill_tokens_per_s, a.sources["prefill"],
                     m.dtype_bytes)


MODELS: dict[str, ModelSpec] = {name: _model_spec(name) for name in model_names()}
DEFAULT_MODEL = "llama-3.1-70b"


# ---- payloads ---------------------------------------------------------------------------------------
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_BASES: dict[int, npt.NDArray[np.uint64]] = {}


def _base(words: int) -> npt.NDArray[np.uint64]:
    base = _BASES.get(words)
    if base is None:
        base = _BASES[words] = np.arange(words, dtype=np.uint64) * _GOLDEN
    return base


def fill_payload(key: bytes, out: memoryview) -> None:
    """Write the demo payload of `key` into `out`: 64-bit words `i * golden ^ seed(key)`."""
    size = len(out)
    words = (size + 7) // 8
    seed = np.uint64(int.from_bytes(key[:8], "little"))
    whole = size // 8
    dest = np.frombuffer(out, dtype=np.uint64, count=whole)
    np.bitwise_xor(_base(words)[:whole], seed, out=dest)
    if size % 8:
        tail = (_base(words)[whole:] ^ seed).view(np.uint8)
        np.frombuffer(out, dtype=np.uint8)[whole * 8 :] = tail[: size % 8]


def check_payload(key: bytes, data: memoryview, scratch: memoryview) -> bool:
    """Whether `data` is exactly the payload of `key` (`scratch` is a buffer of the same size)."""
    fill_payload(key, scratch)
    return bool(np.array_equal(np.frombuffer(data, dtype=np.uint8), np.frombuffer(scratch, dtype=np.uint8)))


# ---- the replay -------------------------------------------------------------------------------------
@dataclasses.dataclass
class DemoConfig:
    store: str
    capacity: int = DEFAULT_CAPACITY
    trace: str | None = None
    requests: int = DEFAULT_REQUESTS
    block_tokens: int = TRACE_BLOCK_TOKENS
    block_size: int = DEFAULT_BLOCK_SIZE
    model: str = DEFAULT_MODEL
    prefill_rate: float | None = None
    seed: int = 0
    pause_s: float = 60.0
    fresh: bool = False


@dataclasses.dataclass
class _Tally:
    references: int = 0
    hits: int = 0
    stored: int = 0
    put_refused: int = 0
    bytes_written: int = 0
    bytes_reloaded: int = 0
    tokens_total: int = 0
    tokens_saved: int = 0
    verified: int = 0
    verify_failures: int = 0
    read_errors: int = 0
    write_s: float = 0.0
    read_s: float = 0.0
    agents: int = 0
    turns: int = 0
    forks: int = 0
    suspended: int = 0
    resumed: int = 0
    resumed_blocks: int = 0
    resumed_blocks_expected: int = 0
    pinned_peak: int = 0
    closed: int = 0
    session_errors: dict[str, int] = dataclasses.field(default_factory=dict)


class _Replay:
    def __init__(self, transport: Transport, config: DemoConfig, fingerprint: bytes) -> None:
        self.t = transport
        self.config = config
        self.fingerprint = fingerprint
        self.batch = min(IO_BATCH, transport.capabilities().limits.max_batch)
        self.max_batch = transport.capabilities().limits.max_batch
        self.put_buffers = [aligned_buffer(config.block_size) for _ in range(self.batch)]
        self.get_buffers = [aligned_buffer(config.block_size) for _ in range(self.batch)]
        self.scratch = aligned_buffer(config.block_size)
        self.sessions: dict[int, str] = {}
        self.session_len: dict[int, int] = {}
        self.tally = _Tally()

    def _session_op(self, name: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except MemkvError as exc:
            key = f"{name}:{exc.code.name}"
            self.tally.session_errors[key] = self.tally.session_errors.get(key, 0) + 1
            return None

    def _lookup(self, keys: Sequence[bytes]) -> tuple[int, list[str]]:
        prefix, leases = 0, []
        while prefix < len(keys):
            chunk = keys[prefix : prefix + self.max_batch]
            result = self.t.lookup(chunk, lease_ms=LEASE_MS)
            if result.lease_id is not None:
                leases.append(result.lease_id)
            prefix += result.prefix_len
            if result.prefix_len < len(chunk):
                break
        return prefix, leases

    def _reload(self, keys: Sequence[bytes]) -> int:
        """Read and verify `keys`; the number of leading blocks that came back intact."""
        tally, size = self.tally, self.config.block_size
        for start in range(0, len(keys), self.batch):
            chunk = keys[start : start + self.batch]
            t0 = time.perf_counter()
            results = self.t.get_into(chunk, self.get_buffers[: len(chunk)])
            tally.read_s += time.perf_counter() - t0
            for i, (key, result) in enumerate(zip(chunk, results, strict=True)):
                if not result.ok:
                    tally.read_errors += 1
                    return start + i
                tally.bytes_reloaded += result.length
                if result.length == size and check_payload(key, self.get_buffers[i][:size], self.scratch):
                    tally.verified += 1
                else:
                    tally.verify_failures += 1
                    return start + i
        return len(keys)

    def _store(self, keys: Sequence[bytes]) -> int:
        """Put `keys` (the prefill); the number of leading blocks now stored."""
        tally = self.tally
        for start in range(0, len(keys), self.batch):
            chunk = keys[start : start + self.batch]
            for key, buf in zip(chunk, self.put_buffers, strict=False):
                fill_payload(key, buf)
            t0 = time.perf_counter()
            results = self.t.put([PutItem(k, b) for k, b in zip(chunk, self.put_buffers, strict=False)])
            tally.write_s += time.perf_counter() - t0
            for i, result in enumerate(results):
                if result.status is ErrorCode.CAPACITY_EXCEEDED:
                    tally.put_refused += len(keys) - start - i
                    return start + i
                result.raise_for_status()
                tally.stored += 1
                tally.bytes_written += self.config.block_size
        return len(keys)

    def turn(self, turn: Turn) -> None:
        tally, request = self.tally, turn.request
        keys = [key_from_sequence_hash(self.fingerprint, h) for h in request.hash_ids]
        sid = self.sessions.get(turn.session)
        if turn.resume_before and sid is not None:
            result = self._session_op("resume", self.t.resume, sid)
            if result is not None:
                tally.resumed += 1
                tally.resumed_blocks += len(result.valid_keys)
                tally.resumed_blocks_expected += self.session_len.get(turn.session, 0)
                self.session_len[turn.session] = len(result.valid_keys)
        hit, leases = self._lookup(keys)
        try:
            intact = self._reload(keys[:hit])
        finally:
            for lease in leases:
                self._session_op("release_lease", self.t.release_lease, lease)
        tally.references += len(keys)
        tally.hits += intact
        tally.tokens_total += request.input_length
        tally.tokens_saved += sum(request.block_tokens_at(p, self.config.block_tokens) for p in range(intact))
        present = intact + self._store(keys[intact:])
        chain = keys[: min(present, request.full_blocks(self.config.block_tokens))]
        self._session(turn, chain)

    def _session(self, turn: Turn, chain: Sequence[bytes]) -> None:
        tally, t = self.tally, self.t
        if turn.kind == "continue" and turn.session in self.sessions:
            tally.turns += 1
            have = self.session_len.get(turn.session, 0)
            if len(chain) > have and self._session_op(
                    "append", t.append, self.sessions[turn.session], chain[have:]) is not None:
                self.session_len[turn.session] = len(chain)
        elif turn.kind == "fork" and turn.parent in self.sessions:
            tally.forks += 1
            parent = turn.parent
            prefix = min(turn.shared, self.session_len.get(parent, 0), len(chain))
            child = self._session_op("fork", t.fork, self.sessions[parent], prefix)
            if child is not None:
                self.sessions[turn.session] = child.session_id
                self.session_len[turn.session] = prefix
                if len(chain) > prefix and self._session_op("append", t.append, child.session_id,
                                                            chain[prefix:]) is not None:
                    self.session_len[turn.session] = len(chain)
        else:
            tally.agents += 1
            info = self._session_op("open", t.open_session, SESSION_TTL_S, chain, self.fingerprint)
            if info is not None:
                self.sessions[turn.session] = info.session_id
                self.session_len[turn.session] = len(chain)
        sid = self.sessions.get(turn.session)
        if turn.suspend_after and sid is not None and self._session_op(
                "suspend", t.suspend, sid, PAUSE_TTL_S) is not None:
            tally.suspended += 1
            tally.pinned_peak = max(tally.pinned_peak, int(t.stats().get("pinned_blocks", 0)))

    def close(self, session: int) -> None:
        sid = self.sessions.pop(session, None)
        if sid is not None and self._session_op("close", self.t.close_session, sid) is not None:
            self.tally.closed += 1


def load_workload(config: DemoConfig) -> tuple[list[TraceRequest], dict[str, Any]]:
    """The requests to replay and a description of where they came from."""
    if config.trace is not None:
        if not os.path.isfile(config.trace):
            raise InvalidArgument(f"trace file {config.trace} does not exist")
        everything = list(read_trace(config.trace, block_tokens=config.block_tokens))
        pause_ms = int(config.pause_s * 1000)
        requests = select_sessions(everything, config.requests, pause_ms, config.block_tokens)
        return requests, {"source": "trace", "trace": os.path.abspath(config.trace),
                          "trace_requests": len(everything),
                          "selection": "the first whole sessions of the trace (every turn), in arrival order"}
    requests = synthetic_trace(config.requests, seed=config.seed, block_tokens=config.block_tokens)
    return requests, {"source": "synthetic", "seed": config.seed}


def run_demo(config: DemoConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Replay the workload against the store at `config.store` and return the report."""
    if config.model not in MODELS:
        raise InvalidArgument(f"unknown model {config.model!r}; known: {', '.join(sorted(MODELS))}")
    if config.block_size < 8 or config.block_size % 8:
        raise InvalidArgument("block size must be a positive multiple of 8 bytes")
    if config.requests < 0 or config.block_tokens <= 0:
        raise InvalidArgument("requests must be >= 0 and block tokens > 0")
    model = MODELS[config.model]
    rate = config.prefill_rate or model.prefill_tokens_per_s
    rate_source = "--prefill-rate" if config.prefill_rate else model.prefill_source
    requests, source = load_workload(config)
    turns = plan_sessions(requests, int(config.pause_s * 1000), config.block_tokens)
    closing = close_order(turns)
    fingerprint = model_fingerprint(config.model, dtype="bfloat16", block_tokens=config.block_tokens,
                                    demo_payload_bytes=config.block_size)
    existed = os.path.exists(os.path.join(config.store, "device.img"))
    unit = min(1 * MiB, (config.block_size + 4095) // 4096 * 4096)
    url = "file://" + urllib.parse.quote(os.path.abspath(config.store))
    started = time.perf_counter()
    with connect(url, NAMESPACE, capacity=config.capacity, unit=unit) as transport:
        if config.fresh:
            transport.invalidate_namespace()
        before = transport.stats()
        replay = _Replay(transport, config, fingerprint)
        if progress is not None:
            progress.total = len(turns)
        for index, turn in enumerate(turns):
            replay.turn(turn)
            for session in closing.get(index, ()):
                replay.close(session)
            if progress is not None:
                t = replay.tally
                ratio = t.hits / t.references if t.references else 0.0
                progress.update(index + 1, f"hit {ratio:.1%}, reloaded {format_size(t.bytes_reloaded)}")
        for session in list(replay.sessions):
            replay.close(session)
        after = transport.stats()
        capacity = transport.capabilities().capacity_bytes
    wall = time.perf_counter() - started
    if progress is not None:
        progress.finish()
    return _report(config, replay.tally, source, requests, turns, before, after, capacity, existed, wall,
                   model, rate, rate_source)


def _report(config: DemoConfig, t: _Tally, source: dict[str, Any], requests: Sequence[TraceRequest],
            turns: Sequence[Turn], before: dict[str, Any], after: dict[str, Any], capacity: int | None,
            existed: bool, wall: float, model: ModelSpec, rate: float, rate_source: str) -> dict[str, Any]:
    full_block = model.bytes_per_token * config.block_tokens
    scale = full_block / config.block_size
    return {
        "workload": {**source, "requests": len(requests), "sessions": len({tt.session for tt in turns}),
                     "block_tokens": config.block_tokens},
        "store": {"path": os.path.abspath(config.store), "namespace": NAMESPACE, "capacity_bytes": capacity,
                  "direct_io": bool(after.get("direct_io")), "reused": existed and not config.fresh,
                  "blocks_at_start": before["blocks"], "blocks_at_end": after["blocks"]},
        "model": {"name": config.model, "kv_bytes_per_token": model.bytes_per_token,
                  "full_block_bytes": full_block, "stored_block_bytes": config.block_size,
                  "payload_scale": scale},
        "blocks": {"references": t.references, "hits": t.hits, "misses": t.references - t.hits,
                   "hit_ratio": t.hits / t.references if t.references else 0.0, "stored": t.stored,
                   "put_refused": t.put_refused, "evictions": after["evictions"] - before["evictions"]},
        "bytes": {"written": t.bytes_written, "reloaded": t.bytes_reloaded,
                  "reloaded_full_size": t.hits * full_block},
        "throughput": {"wall_s": wall, "requests_per_s": len(requests) / wall if wall else 0.0,
                       "write_s": t.write_s, "read_s": t.read_s,
                       "write_gb_per_s": t.bytes_written / t.write_s / 1e9 if t.write_s else 0.0,
                       "read_gb_per_s": t.bytes_reloaded / t.read_s / 1e9 if t.read_s else 0.0},
        "prefill": {"tokens_total": t.tokens_total, "tokens_not_recomputed": t.tokens_saved,
                    "assumed_tokens_per_s": rate, "rate_source": rate_source,
                    **prefill_value(t.tokens_saved, plan_assumptions(config.model, prefill_tokens_per_s=rate))},
        "sessions": {"agents": t.agents, "turns": t.turns, "forked": t.forks, "suspended": t.suspended,
                     "resumed": t.resumed, "pinned_blocks_peak": t.pinned_peak,
                     "resumed_blocks": t.resumed_blocks, "resumed_blocks_expected": t.resumed_blocks_expected,
                     "closed": t.closed, "errors": dict(t.session_errors)},
        "verification": {"blocks_verified": t.verified, "bytes_verified": t.verified * config.block_size,
                         "failures": t.verify_failures, "read_errors": t.read_errors,
                         "ok": t.verify_failures == 0 and t.read_errors == 0 and t.verified == t.hits},
    }


def format_report(r: dict[str, Any]) -> str:
    w, s, m, b, by, tp, p, se, v = (r[k] for k in ("workload", "store", "model", "blocks", "bytes", "throughput",
                                                     "prefill", "sessions", "verification"))
    where = w.get("trace") or f"synthetic generator (seed {w.get('seed')})"
    lines = [
        f"memkv demo: {w['requests']} requests in {w['sessions']} sessions from {where}",
        f"  store       {s['path']} ({format_size(s['capacity_bytes'] or 0)}, "
        f"{'O_DIRECT' if s['direct_io'] else 'buffered'}{', reused' if s['reused'] else ''}): "
        f"{s['blocks_at_start']} -> {s['blocks_at_end']} blocks",
        f"  blocks      {b['references']} referenced, {b['hits']} hits ({b['hit_ratio']:.1%}), "
        f"{b['stored']} stored, {b['evictions']} evicted"
        + (f", {b['put_refused']} refused (store full of pinned blocks)" if b["put_refused"] else ""),
        f"  bytes       {format_size(by['written'])} written, {format_size(by['reloaded'])} reloaded "
        f"(payloads scaled 1:{m['payload_scale']:.0f}; at full size {m['name']} would reload "
        f"{format_size(by['reloaded_full_size'])}, {format_size(m['full_block_bytes'])} a block)",
        f"  throughput  {tp['requests_per_s']:.1f} requests/s over {tp['wall_s']:.1f} s; "
        f"write {tp['write_gb_per_s']:.2f} GB/s, reload {tp['read_gb_per_s']:.2f} GB/s",
        f"  prefill     {p['tokens_not_recomputed']:,} of {p['tokens_total']:,} input tokens not recomputed "
        f"= {p['gpu_seconds_saved']:.0f} GPU-seconds = ${p['usd_saved']:,.2f} at {p['assumed_tokens_per_s']:,.0f} "
        f"tokens/s and ${p['usd_per_gpu_hour']:g}/GPU-hour (memkv plan's catalog: docs/plan.md)",
        f"  sessions    {se['agents']} agents, {se['turns']} follow-up turns, {se['forked']} forks, "
        f"{se['suspended']} suspended (peak {se['pinned_blocks_peak']} pinned blocks), {se['resumed']} resumed "
        f"with {se['resumed_blocks']}/{se['resumed_blocks_expected']} blocks intact, {se['closed']} closed"
        + (f", errors {se['errors']}" if se["errors"] else ""),
        f"  verified    {v['blocks_verified']} blocks, {format_size(v['bytes_verified'])}: "
        + ("every reloaded byte matched" if v["ok"] else
           f"FAILED ({v['failures']} mismatches, {v['read_errors']} read errors)"),
    ]
    return "\n".join(lines)


# ---- command line -------------------------------------------------------------------------------------
def default_store() -> str:
    return os.environ.get("MEMKV_DATA_DIR") or os.path.join(DEFAULT_DATA_DIR, "demo")


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo", help="replay a multi-agent workload against an embedded store and report the savings",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default=None,
                        help="store directory (default: $MEMKV_DATA_DIR or ~/.local/share/memkv/demo); "
                             "an existing store is reused, so a second run hits the first run's blocks")
    parser.add_argument("--capacity", type=parse_size, default=DEFAULT_CAPACITY,
                        help="size of the preallocated device file for a new store (default 2GiB)")
    parser.add_argument("--trace", default=None,
                        help=f"Mooncake JSONL trace (default: {TRACE_NAMES[0]} in ./shared/traces or "
                             "../shared/traces when present)")
    parser.add_argument("--synthetic", action="store_true", help="use the built-in synthetic generator")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic generator")
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS,
                        help=f"requests to replay (default {DEFAULT_REQUESTS})")
    parser.add_argument("--block-tokens", type=int, default=TRACE_BLOCK_TOKENS,
                        help="tokens per block (512, as the trace's hash_ids)")
    parser.add_argument("--block-size", type=parse_size, default=DEFAULT_BLOCK_SIZE,
                        help="bytes stored per block: the scaled-down payload (default 2MiB)")
    parser.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(MODELS),
                        help="model for the fingerprint, full-size KV bytes and prefill rate")
    parser.add_argument("--prefill-rate", type=float, default=None,
                        help="assumed prefill tokens/s per GPU (default: per model)")
    parser.add_argument("--pause", type=float, default=60.0,
                        help="a gap between two turns of a session longer than this (seconds of trace "
                             "time) is a pause: the session is suspended and resumed (default 60)")
    parser.add_argument("--fresh", action="store_true", help="drop the demo namespace's blocks first")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--engine", choices=("vllm", "lmcache", "sglang"), default=None,
                        help="instead of the replay: start a memkv server on 127.0.0.1 and drive this engine's "
                             "real plug-in against it (store a prefix in one engine process, reload it in another)")
    parser.add_argument("--blocks", type=int, default=4, help="with --engine: blocks in the prefix (1..8, default 4)")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.engine:
        from .engine_demo import run_engine_demo

        return run_engine_demo(args.engine, args.blocks, args.json)
    trace = args.trace
    if trace is None and not args.synthetic:
        trace = find_trace(TRACE_NAMES[0])
    if args.synthetic:
        trace = None
    config = DemoConfig(store=args.store or default_store(), capacity=args.capacity, trace=trace,
                        requests=args.requests, block_tokens=args.block_tokens, block_size=args.block_size,
                        model=args.model, prefill_rate=args.prefill_rate, seed=args.seed, pause_s=args.pause,
                        fresh=args.fresh)
    progress = Progress(0, "memkv demo", enabled=not args.quiet)
    report = run_demo(config, progress)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_report(report))
    return 0 if report["verification"]["ok"] else 1


__all__ = ["DemoConfig", "MODELS", "add_parser", "check_payload", "fill_payload", "format_report", "run",
           "run_demo"]
