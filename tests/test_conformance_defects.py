"""The conformance suite catches deliberate defects, each as a failure of the RIGHT requirement.

Each faulty target (conformance/faulty.py) wraps the correct file backend and breaks one rule.
The suite runs the checks that cite the requirement in question (example-based checks and the
model-based state machine) and must report exactly that requirement as failed.
"""

from __future__ import annotations

import io

import pytest

from conformance.faulty import DEFECTS
from conformance.runner import Options, run


@pytest.mark.requirement("MKV-PRO-001")
@pytest.mark.parametrize(("factory", "requirement"), sorted(DEFECTS.items()))
def test_defect_is_reported_against_the_right_requirement(factory: str, requirement: str) -> None:
    doc = run(Options(target=f"conformance.faulty:{factory}", select=(requirement,), seed=1234, examples=8,
                      steps=20, quiet=True, stream=io.StringIO()))
    assert doc["verdict"] == "FAILED", doc["verdict"]
    req = doc["requirements"][requirement]
    assert req["status"] == "fail", (requirement, req["status"], doc["blocking"])
    assert req["failures"], requirement
    failure = req["failures"][0]
    assert failure["expected"] and failure["actual"], failure
    assert failure["reproduction"], failure


def test_correct_backend_passes_the_same_selection() -> None:
    """Control: the same selections against the correct file backend all pass."""
    doc = run(Options(target="file://", select=tuple(sorted(set(DEFECTS.values()))), seed=1234, examples=8, steps=20,
                      quiet=True, stream=io.StringIO()))
    assert doc["verdict"] == "PASSED", doc["blocking"]
