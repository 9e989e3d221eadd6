"""The conformance suite catches deliberate defects, each as a failure of exactly the requirement it breaks.

Each faulty target (memkv/conformance/defects.py) wraps the correct file backend and breaks one rule in
one conditional shape. The suite runs the checks that cite that requirement (example-based
checks and the model-based state machines) and must report exactly that requirement as failed.
CI runs a fixed-seed sample of the catalogue; `MEMKV_DEFECTS=all` runs every defect.
"""

from __future__ import annotations

import io
import os
import random

import pytest

from memkv.conformance.defects import CATALOGUE
from memkv.conformance.runner import Options, run

SAMPLE_SIZE = 16
SAMPLE_SEED = 9


def _selected() -> list[str]:
    names = sorted(CATALOGUE)
    if os.environ.get("MEMKV_DEFECTS") == "all":
        return names
    return sorted(random.Random(SAMPLE_SEED).sample(names, SAMPLE_SIZE))


def test_catalogue_spans_every_profile_the_file_backend_claims() -> None:
    from memkv.conformance.requirements import requirements

    reqs = requirements()
    profiles = {reqs[d.requirement].profile for d in CATALOGUE.values()}
    assert len(CATALOGUE) >= 40, len(CATALOGUE)
    assert {"core", "sessions", "durable"} <= profiles, profiles


@pytest.mark.requirement("MKV-PRO-001")
@pytest.mark.parametrize("name", _selected())
def test_defect_is_reported_against_exactly_its_requirement(name: str) -> None:
    requirement, also = CATALOGUE[name].requirement, CATALOGUE[name].also
    doc = run(Options(target=f"memkv.conformance.faulty:defect?name={name}", select=(requirement,), seed=1234,
                      examples=8,                      steps=20, quiet=True, stream=io.StringIO(), max_shrink_time=5))
    failed = {r for r, v in doc["requirements"].items() if v["status"] in ("fail", "error")}
    assert requirement in failed and failed <= {requirement, *also}, (name, requirement, sorted(failed))
    failure = doc["requirements"][requirement]["failures"][0]
    assert failure["expected"] and failure["actual"], failure
    assert failure["reproduction"], failure


def test_correct_backend_passes_the_same_selections() -> None:
    """Control: the same selections against the correct file backend all pass."""
    selection = tuple(sorted({CATALOGUE[n].requirement for n in _selected()}))
    doc = run(Options(target="file://", select=selection, seed=1234, examples=8, steps=20, quiet=True,
                      stream=io.StringIO()))
    assert doc["verdict"] == "PASSED", doc["blocking"]
