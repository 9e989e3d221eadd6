"""What a cache hit is worth: GPU time not spent on prefill, against what the storage costs.

Pure formulas over a simulation result and the catalog's assumptions (docs/plan.md states each).
A trace stands for a deployment `scale` times its traffic, made of `scale` times as many
independent sessions, which therefore needs `scale` times the cache for the same hit ratio.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .catalog import Assumptions, Tier
from .simulate import SimResult

TB = 1e12


@dataclasses.dataclass(frozen=True, slots=True)
class Traffic:
    """Totals of a trace that do not depend on the cache."""

    requests: int
    tokens_total: int
    output_tokens: int
    duration_s: float

    @classmethod
    def of(cls, sim: SimResult) -> Traffic:
        return cls(sim.requests, sim.tokens_total, sim.output_tokens, max(sim.duration_s, 1.0))


def gpus_busy(traffic: Traffic, a: Assumptions, scale: float = 1.0) -> float:
    """GPUs kept fully busy by the traffic with no prefix reused: prefill of every input token plus decode."""
    gpu_seconds = traffic.tokens_total / a.prefill_tokens_per_s + traffic.output_tokens / a.decode_tokens_per_s
    return scale * gpu_seconds / traffic.duration_s


def reload_bar_bytes_per_s(a: Assumptions) -> float:
    """Storage bandwidth per GPU above which reloading a prefix is faster than recomputing it."""
    return a.prefill_tokens_per_s * a.model.bytes_per_token


def block_bytes(a: Assumptions, block_tokens: int) -> int:
    return a.model.bytes_per_token * block_tokens


@dataclasses.dataclass(frozen=True, slots=True)
class Savings:
    scale: float
    gpus_busy: float
    tokens_avoided_per_s: float
    gpus_freed: float
    gpu_hours_per_year: float
    usd_per_year: float
    recompute_share: float
    """Share of all GPU time (prefill and decode) that the cache removes."""
    reload_bytes_per_s: float


def savings(sim: SimResult, a: Assumptions, scale: float) -> Savings:
    traffic = Traffic.of(sim)
    busy = gpus_busy(traffic, a, scale)
    avoided_per_s = scale * sim.tokens_avoided / traffic.duration_s
    freed = avoided_per_s / a.prefill_tokens_per_s
    hours = freed * a.hours_per_year
    return Savings(scale, busy, avoided_per_s, freed, hours, hours * a.usd_per_gpu_hour,
                   freed / busy if busy else 0.0, avoided_per_s * a.model.bytes_per_token)


def prefill_value(tokens: int, a: Assumptions) -> dict[str, Any]:
    """GPU time and dollars of prefilling `tokens` (what reloading them instead saves)."""
    seconds = tokens / a.prefill_tokens_per_s
    return {"gpu_seconds_saved": seconds, "gpu_hours_saved": seconds / 3600,
            "usd_saved": seconds / 3600 * a.usd_per_gpu_hour, "usd_per_gpu_hour": a.usd_per_gpu_hour,
            "price_source": a.sources["price"]}


def nodes_for(gpus: float, a: Assumptions) -> int:
    return max(1, math.ceil(gpus / a.gpus_per_node))


def storage_usd_per_year(tier: Tier, capacity_bytes: float) -> float:
    return capacity_bytes / TB * tier.usd_per_tb_month * 12


def payback_months(capex_usd: float, usd_per_year: float) -> float | None:
    """Months until the GPU time saved pays for the storage bought; None when it never does."""
    if capex_usd <= 0:
        return 0.0
    return capex_usd / (usd_per_year / 12) if usd_per_year > 0 else None


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimCheck:
    gpus: int
    utilization_before: float
    utilization_after: float
    usd_per_gpu_hour: float
    gpus_freed: float
    usd_per_year: float
    required_share: float
    """Share of GPU time the cache must remove for the claim's utilization jump."""


def reproduce_claim(a: Assumptions) -> ClaimCheck:
    """The claim's own arithmetic: the same work at `after` utilization needs G x before/after GPUs."""
    c = a.claim
    required = 1 - c.utilization_before / c.utilization_after
    freed = c.gpus * required
    return ClaimCheck(c.gpus, c.utilization_before, c.utilization_after, c.usd_per_gpu_hour, freed,
                      freed * a.hours_per_year * c.usd_per_gpu_hour, required)


def claim_for_workload(share: float, a: Assumptions) -> float:
    """Dollars a year the claim's deployment saves when the cache removes `share` of its GPU time."""
    c = a.claim
    return c.gpus * share * a.hours_per_year * c.usd_per_gpu_hour


__all__ = ["ClaimCheck", "Savings", "TB", "Traffic", "block_bytes", "claim_for_workload", "gpus_busy",
           "nodes_for", "payback_months", "prefill_value", "reload_bar_bytes_per_s", "reproduce_claim", "savings",
           "storage_usd_per_year"]
