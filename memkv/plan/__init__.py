"""`memkv.plan`: capacity planning from workload traces (simulate, price, recommend a tier).

Pure: no store or network I/O. The simulator uses memkv.eviction, the code the store runs.
"""

from __future__ import annotations

from .catalog import Assumptions, assumptions, load_catalog
from .planner import PlanOptions, make_plan
from .report import format_plan
from .simulate import SimConfig, SimResult, capacity_sweep, simulate, sweep_capacities

__all__ = ["Assumptions", "PlanOptions", "SimConfig", "SimResult", "assumptions", "capacity_sweep", "format_plan",
           "load_catalog", "make_plan", "simulate", "sweep_capacities"]
