"""vLLM reaches memkv as a secondary tier behind its CPU offloading (docs/integrations.md, "vLLM").

`register` is the `vllm.general_plugins` entry point: it names the tier type "memkv" in vLLM's
`SecondaryTierFactory`, so `secondary_tiers: [{"type": "memkv", ...}]` finds
`memkv.integrations.vllm.tier.MemkvSecondaryTier` without a vLLM patch.
"""

from __future__ import annotations

TIER_TYPE = "memkv"


def register() -> None:
    """Register the tier; vLLM may call this several times in one process."""
    from vllm.v1.kv_offload.tiering.factory import SecondaryTierFactory

    try:
        SecondaryTierFactory.register_tier(TIER_TYPE, "memkv.integrations.vllm.tier", "MemkvSecondaryTier")
    except ValueError:  # already registered by an earlier call
        pass
