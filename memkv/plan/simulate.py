"""Replay a Mooncake-format trace through a block cache of bounded size and count what it serves.

Pure and single-pass. Each `hash_id` of a request is one block, chained after the id before it.
Requests are taken in file order; a request's blocks are first looked up (a block present is a
block hit; the present blocks before the first missing one are the prefix hit, which is what an
engine can reload), then each block, in order, is read (a use) or stored, evicting first when
the cache is full. The eviction order is memkv.eviction's, the code the store runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from ..errors import InvalidArgument
from ..eviction import POLICIES, ChainOrder, EvictionOrder, LruOrder, PolicyName, make_order
from .workload import TRACE_BLOCK_TOKENS, TraceRequest


@dataclasses.dataclass(frozen=True, slots=True)
class SimConfig:
    capacity_blocks: int | None = None
    """Blocks the cache holds; None for an unbounded cache."""
    policy: PolicyName = "chain"
    ttl_s: float | None = None
    """A block not used for this long (trace time plus `pause_s`) has expired; None: no TTL."""
    pause_s: float = 0.0
    """A human pause (approval, slow tool) added before every reuse of a block, for the TTL."""
    agents: int = 1
    """Agents replaying the workload side by side, sharing the first `shared_blocks` of every chain."""
    shared_blocks: int = 1
    block_tokens: int = TRACE_BLOCK_TOKENS

    def check(self) -> SimConfig:
        if self.policy not in POLICIES:
            raise InvalidArgument(f"policy must be one of {', '.join(POLICIES)}")
        if self.capacity_blocks is not None and self.capacity_blocks < 0:
            raise InvalidArgument("capacity must be non-negative")
        if self.ttl_s is not None and self.ttl_s <= 0:
            raise InvalidArgument("ttl must be positive")
        if self.pause_s < 0 or self.agents < 1 or self.shared_blocks < 0 or self.block_tokens <= 0:
            raise InvalidArgument("pause >= 0, agents >= 1, shared blocks >= 0 and block tokens > 0 are required")
        return self


@dataclasses.dataclass(slots=True)
class SimResult:
    config: SimConfig
    requests: int = 0
    references: int = 0
    block_hits: int = 0
    prefix_hits: int = 0
    tokens_total: int = 0
    tokens_avoided: int = 0
    """Input tokens of prefix-hit blocks: prefill an engine does not recompute."""
    output_tokens: int = 0
    stored: int = 0
    evictions: int = 0
    expirations: int = 0
    peak_blocks: int = 0
    first_ms: int = 0
    last_ms: int = 0
    evicted: list[int] | None = None
    """Every evicted block in order, when asked for (tests compare it with the store's)."""

    @property
    def block_hit_ratio(self) -> float:
        return self.block_hits / self.references if self.references else 0.0

    @property
    def prefix_hit_ratio(self) -> float:
        return self.prefix_hits / self.references if self.references else 0.0

    @property
    def duration_s(self) -> float:
        return max(0.0, (self.last_ms - self.first_ms) / 1000.0)

    def as_dict(self) -> dict[str, object]:
        c = self.config
        return {
            "policy": c.policy, "capacity_blocks": c.capacity_blocks, "ttl_s": c.ttl_s, "pause_s": c.pause_s,
            "agents": c.agents, "requests": self.requests, "references": self.references,
            "block_hits": self.block_hits, "prefix_hits": self.prefix_hits,
            "block_hit_ratio": self.block_hit_ratio, "prefix_hit_ratio": self.prefix_hit_ratio,
            "tokens_total": self.tokens_total, "tokens_avoided": self.tokens_avoided,
            "output_tokens": self.output_tokens, "stored": self.stored, "evictions": self.evictions,
            "expirations": self.expirations, "peak_blocks": self.peak_blocks, "duration_s": self.duration_s,
        }


def _agent_chains(request: TraceRequest, agents: int, shared: int) -> Iterable[tuple[int, ...]]:
    """The request as each agent issues it: ids past the shared prefix are private to the agent."""
    if agents == 1:
        yield request.hash_ids
        return
    for agent in range(agents):
        yield tuple(h * agents + (agent if i >= shared else 0) for i, h in enumerate(request.hash_ids))


def _expire(order: EvictionOrder[int], ids: Sequence[int], last_use: dict[int, float], cutoff: float,
            result: SimResult) -> None:
    """Drop the request's blocks last used before `cutoff`.

    A block is used whenever a block chained after it is, so everything chained after an expired
    block has expired too: chain order drops the whole subtree at once (none of it is left cut).
    """
    for block in ids:
        if block in order and last_use[block] < cutoff:
            if isinstance(order, ChainOrder):
                result.expirations += order.discard_subtree(block)
            else:
                order.discard(block)
                result.expirations += 1


def simulate(requests: Iterable[TraceRequest], config: SimConfig, record_evictions: bool = False) -> SimResult:
    """Replay `requests` (in the given order) through a cache as `config` describes."""
    config.check()
    order: LruOrder[int] | ChainOrder[int] = make_order(config.policy)
    capacity = config.capacity_blocks
    last_use: dict[int, float] = {}
    ttl = config.ttl_s
    result = SimResult(config, evicted=[] if record_evictions else None)
    use = order.use
    first = True
    for request in requests:
        if first:
            result.first_ms, first = request.timestamp, False
        result.last_ms = max(result.last_ms, request.timestamp)
        now = request.timestamp / 1000.0
        for ids in _agent_chains(request, config.agents, config.shared_blocks):
            result.requests += 1
            result.tokens_total += request.input_length
            result.output_tokens += request.output_length
            result.references += len(ids)
            if ttl is not None:
                _expire(order, ids, last_use, now + config.pause_s - ttl, result)
            hits = [block in order for block in ids]
            prefix = hits.index(False) if False in hits else len(hits)
            result.block_hits += sum(hits)
            result.prefix_hits += prefix
            result.tokens_avoided += min(request.input_length, prefix * config.block_tokens)
            parent: int | None = None
            for block in ids:
                if block in order:
                    use(block)
                elif capacity is None or capacity > 0:
                    while capacity is not None and len(order) >= capacity:
                        victim = next(order.candidates())
                        order.discard(victim)
                        result.evictions += 1
                        if result.evicted is not None:
                            result.evicted.append(victim)
                    order.add(block, parent)
                    result.stored += 1
                if ttl is not None:
                    last_use[block] = now
                parent = block
            result.peak_blocks = max(result.peak_blocks, len(order))
    return result


def sweep_capacities(distinct_blocks: int, points: int) -> list[int]:
    """Capacities from 1% to 100% of the distinct blocks, evenly spaced on a log scale."""
    if points < 2 or distinct_blocks < 1:
        return [max(1, distinct_blocks)]
    low = max(1, distinct_blocks // 100)
    ratio = (distinct_blocks / low) ** (1 / (points - 1))
    out = sorted({max(1, round(low * ratio**i)) for i in range(points)})
    return out


def capacity_sweep(requests: Sequence[TraceRequest], base: SimConfig, capacities: Sequence[int],
                   policies: Sequence[PolicyName] = POLICIES) -> list[SimResult]:
    """`simulate` at each capacity, for each policy."""
    return [simulate(requests, dataclasses.replace(base, capacity_blocks=c, policy=p))
            for p in policies for c in capacities]


__all__ = ["SimConfig", "SimResult", "capacity_sweep", "simulate", "sweep_capacities"]
