"""`make_plan`: simulate a trace, sweep capacities, and turn hits into money and a tier choice.

Pure: the caller reads the trace; the result is a JSON-ready dict (report.py formats it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidArgument
from ..eviction import POLICIES
from .catalog import Assumptions, Tier, assumptions
from .economics import (
    TB,
    Traffic,
    block_bytes,
    claim_for_workload,
    gpus_busy,
    nodes_for,
    payback_months,
    reload_bar_bytes_per_s,
    reproduce_claim,
    savings,
    storage_usd_per_year,
)
from .simulate import SimConfig, SimResult, simulate, sweep_capacities
from .workload import TraceRequest

NOT_WORTH_MIN_HIT = 0.02
"""Below this unbounded prefix hit ratio a workload has too little reuse for any tier."""
EXTERNAL_MIN_GAIN = 0.10
"""An external tier must add this share of the GPU-memory tier's savings to be recommended."""
HOSTED_TTL_S = 300.0
HUMAN_PAUSE_S = 600.0


@dataclasses.dataclass(frozen=True, slots=True)
class PlanOptions:
    simulation: SimConfig = dataclasses.field(default_factory=SimConfig)
    """The cache to simulate; its capacity in blocks, or None for `capacity_bytes` or unbounded."""
    capacity_bytes: int | None = None
    """Cache size of the whole deployment in bytes (full-size KV blocks of the model)."""
    model: str = "llama-3.1-70b"
    gpu: str = "h100"
    gpu_price: float | None = None
    prefill_rate: float | None = None
    decode_rate: float | None = None
    tier_prices: dict[str, float] = dataclasses.field(default_factory=dict)
    scale: float | None = None
    gpus: float | None = None
    tier: str = "dram"
    sweep_points: int = 6
    sensitivity: bool = True

    def check(self) -> None:
        self.simulation.check()
        if self.simulation.capacity_blocks is not None and self.capacity_bytes is not None:
            raise InvalidArgument("give the capacity in blocks or in bytes, not both")
        if self.capacity_bytes is not None and self.capacity_bytes < 0:
            raise InvalidArgument("capacity must be non-negative")
        if self.scale is not None and self.gpus is not None:
            raise InvalidArgument("give --scale or --gpus, not both")
        if (self.scale is not None and self.scale <= 0) or (self.gpus is not None and self.gpus <= 0):
            raise InvalidArgument("scale and gpus must be positive")
        if self.tier not in ("dram", "nvme"):
            raise InvalidArgument("tier must be dram or nvme")
        if self.sweep_points < 0:
            raise InvalidArgument("sweep points must be non-negative")


class _Planner:
    def __init__(self, requests: Sequence[TraceRequest], opts: PlanOptions, a: Assumptions) -> None:
        self.requests, self.opts, self.a = requests, opts, a
        self.base = dataclasses.replace(opts.simulation, capacity_blocks=None)
        self.block_bytes = block_bytes(a, self.base.block_tokens)
        self._runs: dict[SimConfig, SimResult] = {}
        self.unbounded = self.run(None)
        traffic = Traffic.of(self.unbounded)
        self.scale = opts.gpus / gpus_busy(traffic, a) if opts.gpus is not None else (opts.scale or 1.0)

    def run(self, capacity_blocks: int | None, **changes: Any) -> SimResult:
        config = dataclasses.replace(self.base, capacity_blocks=capacity_blocks, **changes)
        if capacity_blocks is not None and config.ttl_s is None and self._runs \
                and capacity_blocks >= self.unbounded.peak_blocks:
            # Never full, so nothing is evicted: the unbounded run, whatever the policy.
            return dataclasses.replace(self.unbounded, config=config)
        if config not in self._runs:
            self._runs[config] = simulate(self.requests, config)
        return self._runs[config]

    def blocks_for(self, capacity_bytes: float) -> int:
        return int(capacity_bytes // (self.block_bytes * self.scale))

    def bytes_for(self, sim: SimResult) -> float:
        blocks = sim.config.capacity_blocks
        return (sim.peak_blocks if blocks is None else blocks) * self.block_bytes * self.scale

    def economics(self, sim: SimResult, tier: Tier | None) -> dict[str, Any]:
        s = savings(sim, self.a, self.scale)
        capacity = self.bytes_for(sim)
        cost = storage_usd_per_year(tier, capacity) if tier else 0.0
        capex = capacity / TB * tier.usd_per_tb if tier else 0.0
        nodes = nodes_for(s.gpus_busy, self.a)
        available = nodes * tier.gb_per_s_per_node * 1e9 if tier else math.inf
        per_gpu = tier.gb_per_s_per_node * 1e9 / self.a.gpus_per_node if tier else math.inf
        return {
            **dataclasses.asdict(s), "tier": tier.name if tier else "gpu", "capacity_bytes": capacity,
            "storage_usd_per_year": cost, "net_usd_per_year": s.usd_per_year - cost, "capex_usd": capex,
            "payback_months": payback_months(capex, s.usd_per_year), "nodes": nodes,
            "bandwidth_available_bytes_per_s": available if tier else None,
            "bandwidth_per_gpu_bytes_per_s": per_gpu if tier else None,
            "reload_faster_than_recompute": per_gpu >= reload_bar_bytes_per_s(self.a),
            "bandwidth_sufficient": s.reload_bytes_per_s <= available,
        }

    # ---- the parts of the report ----------------------------------------------------------------
    def sweep(self) -> list[dict[str, Any]]:
        if self.opts.sweep_points == 0:
            return []
        out = []
        for policy in POLICIES:
            for blocks in sweep_capacities(self.unbounded.peak_blocks, self.opts.sweep_points):
                sim = self.run(blocks, policy=policy)
                e = savings(sim, self.a, self.scale)
                out.append({"policy": policy, "capacity_blocks": blocks, "capacity_bytes": self.bytes_for(sim),
                            "block_hit_ratio": sim.block_hit_ratio, "prefix_hit_ratio": sim.prefix_hit_ratio,
                            "gpu_usd_per_year": e.usd_per_year})
        return out

    def tiers(self) -> list[dict[str, Any]]:
        needed = self.unbounded.peak_blocks
        gpus = max(1.0, gpus_busy(Traffic.of(self.unbounded), self.a, self.scale))
        nodes = nodes_for(gpus, self.a)
        limits: list[tuple[Tier | None, float]] = [(None, gpus * self.a.hbm_kv_spare_bytes)]
        limits += [(tier, nodes * tier.max_tb_per_node * TB) for tier in self.a.tiers.values()]
        out = []
        for tier, limit in limits:
            blocks = min(needed, self.blocks_for(limit))
            sim = self.run(blocks)
            out.append({**self.economics(sim, tier), "capacity_blocks": blocks, "limit_bytes": limit,
                        "prefix_hit_ratio": sim.prefix_hit_ratio, "holds_working_set": blocks >= needed})
        return out

    def recommend(self, tiers: list[dict[str, Any]]) -> dict[str, str]:
        gpu = tiers[0]
        usable = [t for t in tiers[1:] if t["reload_faster_than_recompute"] and t["bandwidth_sufficient"]]
        best = max(usable, key=lambda t: t["net_usd_per_year"], default=None)
        hit = self.unbounded.prefix_hit_ratio
        if hit < NOT_WORTH_MIN_HIT or max(gpu["usd_per_year"], best["net_usd_per_year"] if best else 0.0) <= 0:
            return {"tier": "not worth it",
                    "reason": f"even an unbounded cache reuses only {hit:.1%} of block references; "
                              "no tier pays for itself"}
        gain = best["net_usd_per_year"] - gpu["usd_per_year"] if best else 0.0
        if best is None or gain < EXTERNAL_MIN_GAIN * gpu["usd_per_year"]:
            return {"tier": "GPU memory only",
                    "reason": f"spare HBM ({gpu['limit_bytes'] / 1e9:,.0f} GB) already reaches a "
                              f"{gpu['prefix_hit_ratio']:.1%} prefix hit ratio (${gpu['usd_per_year']:,.0f}/year); "
                              f"the best external tier adds ${gain:,.0f}/year net"}
        name = {"dram": "host DRAM", "nvme": "NVMe tier"}[best["tier"]]
        return {"tier": name,
                "reason": f"{best['capacity_bytes'] / TB:,.2f} TB of {best['tier']} raises the prefix hit ratio "
                          f"from {gpu['prefix_hit_ratio']:.1%} (spare HBM) to {best['prefix_hit_ratio']:.1%}, "
                          f"${gain:,.0f}/year more after ${best['storage_usd_per_year']:,.0f}/year of storage; "
                          f"reload needs {best['reload_bytes_per_s'] / 1e9:.2f} GB/s of "
                          f"{best['bandwidth_available_bytes_per_s'] / 1e9:,.0f} GB/s available"}

    def sensitivity(self, main: SimResult) -> list[dict[str, Any]]:
        """Net dollars a year of the configured cache when one assumption moves, the others fixed."""
        tier = self.a.tiers[self.opts.tier]
        base = self.economics(main, tier)["net_usd_per_year"]
        blocks = main.config.capacity_blocks if main.config.capacity_blocks is not None else main.peak_blocks
        low_price, high_price = self.a.usd_per_gpu_hour_range

        def net(a: Assumptions | None = None, sim: SimResult | None = None, t: Tier = tier) -> float:
            saved = _Planner.__new__(_Planner)
            saved.__dict__.update(self.__dict__)
            saved.a = a or self.a
            return float(saved.economics(sim or main, t)["net_usd_per_year"])

        rows = [
            ("GPU $/hour", f"{low_price:g}", f"{high_price:g}",
             net(dataclasses.replace(self.a, usd_per_gpu_hour=low_price)),
             net(dataclasses.replace(self.a, usd_per_gpu_hour=high_price))),
            ("prefill tokens/s", "x0.5", "x2",
             net(dataclasses.replace(self.a, prefill_tokens_per_s=self.a.prefill_tokens_per_s * 0.5)),
             net(dataclasses.replace(self.a, prefill_tokens_per_s=self.a.prefill_tokens_per_s * 2))),
            (f"{tier.name} $/TB", "x0.5", "x2", net(t=dataclasses.replace(tier, usd_per_tb=tier.usd_per_tb * 0.5)),
             net(t=dataclasses.replace(tier, usd_per_tb=tier.usd_per_tb * 2))),
            ("cache capacity", "x0.5", "x2", net(sim=self.run(max(1, blocks // 2))), net(sim=self.run(blocks * 2))),
            ("block TTL", f"{HOSTED_TTL_S:g} s", "none", net(sim=self.run(blocks, ttl_s=HOSTED_TTL_S)),
             net(sim=self.run(blocks, ttl_s=None))),
        ]
        out = [{"assumption": name, "low": low, "high": high, "net_usd_per_year_low": lo,
                "net_usd_per_year_high": hi, "swing_usd_per_year": abs(hi - lo), "base_net_usd_per_year": base}
               for name, low, high, lo, hi in rows]
        return sorted(out, key=lambda r: -r["swing_usd_per_year"])

    def claim(self, main: SimResult) -> dict[str, Any]:
        check = reproduce_claim(self.a)
        cases = [("this workload, configured cache", main), ("this workload, unbounded cache", self.unbounded),
                 (f"hosted-cache style: {HOSTED_TTL_S:g} s TTL, {HUMAN_PAUSE_S:g} s human pause before each reuse",
                  self.run(None, ttl_s=HOSTED_TTL_S, pause_s=HUMAN_PAUSE_S))]
        rows = []
        for label, sim in cases:
            share = savings(sim, self.a, 1.0).recompute_share
            usd = claim_for_workload(share, self.a)
            rows.append({"workload": label, "recompute_share": share, "usd_per_year": usd,
                         "holds": share >= check.required_share})
        return {**dataclasses.asdict(check), "claimed_usd_per_year": self.a.claim.claimed_usd_per_year,
                "source": self.a.claim.source, "workloads": rows}


def make_plan(requests: Sequence[TraceRequest], opts: PlanOptions, source: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    """The whole plan of `requests` (a trace in file order) as a JSON-ready dict."""
    opts.check()
    a = assumptions(opts.model, opts.gpu, opts.gpu_price, opts.prefill_rate, opts.decode_rate, opts.tier_prices)
    p = _Planner(requests, opts, a)
    blocks = opts.simulation.capacity_blocks
    if blocks is None and opts.capacity_bytes is not None:
        blocks = p.blocks_for(opts.capacity_bytes)
    main = p.run(blocks)
    tiers = p.tiers()
    traffic = Traffic.of(p.unbounded)
    return {
        **main.as_dict(),
        "trace": {**(source or {}), "requests": traffic.requests, "input_tokens": traffic.tokens_total,
                  "output_tokens": traffic.output_tokens, "duration_s": traffic.duration_s,
                  "distinct_blocks": p.unbounded.peak_blocks if p.base.ttl_s is None else None,
                  "unbounded_block_hit_ratio": p.unbounded.block_hit_ratio,
                  "unbounded_prefix_hit_ratio": p.unbounded.prefix_hit_ratio},
        "assumptions": [
            *a.table(),
            {"name": "traffic_scale", "value": p.scale, "unit": "x trace",
             "source": "--gpus" if opts.gpus is not None else ("--scale" if opts.scale else "the trace as recorded")},
            {"name": "block_tokens", "value": p.base.block_tokens, "unit": "tokens", "source": "the trace format"}],
        "economics": {**p.economics(main, a.tiers[opts.tier]),
                      "block_bytes": p.block_bytes,
                      "bytes_reloaded": main.tokens_avoided * a.model.bytes_per_token * p.scale,
                      "reload_bar_bytes_per_s_per_gpu": reload_bar_bytes_per_s(a)},
        "tiers": tiers,
        "recommendation": p.recommend(tiers),
        "sensitivity": p.sensitivity(main) if opts.sensitivity else [],
        "claim": p.claim(main),
        "sweep": p.sweep(),
    }


__all__ = ["PlanOptions", "make_plan"]
