"""The economics catalog (catalog.yaml next to this module): models, GPUs, storage tiers, the claim.

Every number carries its source; `Assumptions` is what one plan uses after command-line overrides.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from typing import Any

import yaml

from ..errors import InvalidArgument

CATALOG_FILE = "catalog.yaml"


@dataclasses.dataclass(frozen=True, slots=True)
class Model:
    name: str
    layers: int
    kv_heads: int
    head_dim: int
    kv_tensors: int
    dtype_bytes: int
    params_b: float
    source: str

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def bytes_per_token(self) -> int:
        return self.kv_tensors * self.layers * self.kv_width * self.dtype_bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Tier:
    name: str
    usd_per_tb: float
    amortization_months: float
    max_tb_per_node: float
    gb_per_s_per_node: float
    source: str

    @property
    def usd_per_tb_month(self) -> float:
        return self.usd_per_tb / self.amortization_months


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    gpus: int
    utilization_before: float
    utilization_after: float
    usd_per_gpu_hour: float
    claimed_usd_per_year: float
    source: str


@dataclasses.dataclass(frozen=True, slots=True)
class Assumptions:
    """Everything the economics depend on besides the simulation."""

    model: Model
    gpu: str
    usd_per_gpu_hour: float
    usd_per_gpu_hour_range: tuple[float, float]
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    hbm_kv_spare_bytes: float
    tiers: dict[str, Tier]
    gpus_per_node: int
    hours_per_year: float
    claim: Claim
    sources: dict[str, str]

    def table(self) -> list[dict[str, Any]]:
        """(name, value, unit, source) rows for reports."""
        m = self.model
        rows: list[dict[str, Any]] = [
            {"name": "model", "value": m.name, "unit": "", "source": m.source},
            {"name": "kv_bytes_per_token", "value": m.bytes_per_token, "unit": "B", "source": m.source},
            {"name": "usd_per_gpu_hour", "value": self.usd_per_gpu_hour, "unit": "$/h",
             "source": self.sources["price"]},
            {"name": "prefill_tokens_per_s", "value": self.prefill_tokens_per_s, "unit": "tokens/s/GPU",
             "source": self.sources["prefill"]},
            {"name": "decode_tokens_per_s", "value": self.decode_tokens_per_s, "unit": "tokens/s/GPU",
             "source": self.sources["decode"]},
            {"name": "hbm_kv_spare_bytes", "value": self.hbm_kv_spare_bytes, "unit": "B/GPU",
             "source": self.sources["hbm"]},
        ]
        for tier in self.tiers.values():
            rows.append({"name": f"{tier.name}_usd_per_tb_month", "value": round(tier.usd_per_tb_month, 2),
                         "unit": "$/TB-month", "source": tier.source})
            rows.append({"name": f"{tier.name}_gb_per_s_per_node", "value": tier.gb_per_s_per_node,
                         "unit": "GB/s", "source": tier.source})
        rows.append({"name": "gpus_per_node", "value": self.gpus_per_node, "unit": "",
                     "source": self.sources["deployment"]})
        return rows


def load_catalog() -> dict[str, Any]:
    text = resources.files("memkv.plan").joinpath(CATALOG_FILE).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or data.get("version") != 1:
        raise InvalidArgument(f"{CATALOG_FILE}: expected version 1")
    return data


def model_names() -> list[str]:
    return sorted(load_catalog()["models"])


def assumptions(model: str = "llama-3.1-70b", gpu: str = "h100", usd_per_gpu_hour: float | None = None,
                prefill_tokens_per_s: float | None = None, decode_tokens_per_s: float | None = None,
                tier_prices: dict[str, float] | None = None) -> Assumptions:
    """The catalog's numbers for `model` on `gpu`, with the given overrides (None: the catalog's)."""
    data = load_catalog()
    if model not in data["models"]:
        raise InvalidArgument(f"unknown model {model!r}; known: {', '.join(sorted(data['models']))}")
    if gpu not in data["gpus"]:
        raise InvalidArgument(f"unknown GPU {gpu!r}; known: {', '.join(sorted(data['gpus']))}")
    m = Model(model, **data["models"][model])
    g = data["gpus"][gpu]
    size_factor = 70 / m.params_b
    tiers = {}
    for name, raw in data["tiers"].items():
        tier = Tier(name, **raw)
        if tier_prices and name in tier_prices:
            tier = dataclasses.replace(tier, usd_per_tb=tier_prices[name],
                                       source=f"--{name}-price (was: {tier.source})")
        tiers[name] = tier
    price_override = usd_per_gpu_hour is not None
    sources = {
        "price": "--gpu-price" if price_override else g["price_source"],
        "prefill": "--prefill-rate" if prefill_tokens_per_s is not None else g["prefill_source"],
        "decode": "--decode-rate" if decode_tokens_per_s is not None else g["decode_source"],
        "hbm": g["hbm_source"],
        "deployment": data["deployment"]["source"],
    }
    price = float(g["usd_per_hour"]) if usd_per_gpu_hour is None else usd_per_gpu_hour
    values = [price, prefill_tokens_per_s or 1.0, decode_tokens_per_s or 1.0]
    if any(v <= 0 for v in values) or any(t.usd_per_tb < 0 for t in tiers.values()):
        raise InvalidArgument("prices and rates must be positive")
    return Assumptions(
        model=m, gpu=gpu, usd_per_gpu_hour=price,
        usd_per_gpu_hour_range=(float(g["usd_per_hour_low"]), float(g["usd_per_hour_high"])),
        prefill_tokens_per_s=prefill_tokens_per_s or g["prefill_tokens_per_s_70b"] * size_factor,
        decode_tokens_per_s=decode_tokens_per_s or g["decode_tokens_per_s_70b"] * size_factor,
        hbm_kv_spare_bytes=float(g["hbm_kv_spare_bytes"]), tiers=tiers,
        gpus_per_node=int(data["deployment"]["gpus_per_node"]),
        hours_per_year=float(data["deployment"]["hours_per_year"]),
        claim=Claim(**data["claim"]), sources=sources)


__all__ = ["Assumptions", "Claim", "Model", "Tier", "assumptions", "load_catalog", "model_names"]
