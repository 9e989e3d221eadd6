"""The conformance suite covers every MUST of the spec, or documents why not (issue #5)."""

from __future__ import annotations

import ast
from pathlib import Path

from memkv.conformance.requirements import exclusions, requirements

CHECKS = Path(__file__).resolve().parents[2] / "memkv" / "conformance" / "checks"


def _cited() -> dict[str, list[str]]:
    """Requirement IDs cited by `requirement` markers in the checks (read from source, no import)."""
    cited: dict[str, list[str]] = {}
    for path in sorted(CHECKS.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                     for t in node.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "requirement"):
                continue
            for arg in node.args:
                values = [arg]
                if isinstance(arg, ast.Starred) and isinstance(arg.value, ast.Name):
                    tup = constants.get(arg.value.id)
                    values = list(tup.elts) if isinstance(tup, ast.Tuple) else []
                for value in values:
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        cited.setdefault(value.value, []).append(path.name)
    assert cited, f"no requirement markers found under {CHECKS}"
    return cited


def test_every_must_has_a_check_or_a_documented_exclusion() -> None:
    cited = _cited()
    excluded = exclusions()
    missing = [r.id for r in requirements().values()
               if r.level == "MUST" and r.id not in cited and r.id not in excluded]
    assert not missing, f"MUSTs with no conformance check and no entry in memkv/conformance/exclusions.yaml: {missing}"


def test_secure_and_admin_are_checked_not_excluded() -> None:
    """The server's profiles have checks for every MUST (memkv/conformance/checks/test_security.py, test_admin.py)."""
    cited = _cited()
    excluded = exclusions()
    for req in requirements().values():
        if req.profile in ("secure", "admin") and req.level == "MUST":
            assert req.id in cited, f"{req.id} (profile {req.profile}) has no conformance check"
            assert req.id not in excluded, f"{req.id} is checked; drop its exclusion"
    assert not [e for e in excluded.values() if "pending" in e.checked_by.lower()], "no exclusion is 'pending'"


def test_no_check_cites_an_unknown_id() -> None:
    known = requirements()
    unknown = {req_id: files for req_id, files in _cited().items() if req_id not in known}
    assert not unknown, f"checks cite requirement IDs that spec/requirements.yaml does not define: {unknown}"


def test_exclusions_name_known_requirements_and_give_reasons() -> None:
    known = requirements()
    for req_id, exclusion in exclusions().items():
        assert req_id in known, f"exclusion of unknown requirement {req_id}"
        assert len(exclusion.reason) > 20, f"exclusion of {req_id} needs a reason"
