"""`memkv.plan`: capacity planning from workload traces (simulate, price, recommend a tier).

Pure: no store or network I/O. The simulator uses memkv.eviction, the code the store runs.
"""

from __future__ import annotations

from .planner import PlanOptions, make_plan
from .simulate import SimConfig, simulate

__all__ = ["PlanOptions", "SimConfig", "make_plan", "simulate"]
