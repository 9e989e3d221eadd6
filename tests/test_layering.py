"""The package's layering (issue 11): the import-linter contracts in pyproject.toml hold.

grimp, under import-linter, reads every import statement of a module, function-local ones
included, so a lazy import cannot hide a layer crossing.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]
CORE = next(c for c in CONTRACTS if c["name"].startswith("core "))["source_modules"]


def test_import_contracts_are_kept() -> None:
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_top_level_holds_only_the_core_and_connect() -> None:
    """`memkv/` holds the vocabulary, the contract and `connect`; everything else lives in a folder by job."""
    top = {f"memkv.{path.stem}" for path in (ROOT / "memkv").glob("*.py") if path.stem != "__init__"}
    assert top == {*CORE, "memkv.connect"}


def test_every_package_is_named_by_a_contract() -> None:
    """A new subpackage gets a place in the layering before it lands."""
    named = {module for contract in CONTRACTS
             for key in ("source_modules", "forbidden_modules", "modules") for module in contract.get(key, [])}
    packages = {f"memkv.{path.parent.name}" for path in (ROOT / "memkv").glob("*/__init__.py")}
    assert packages - named == set()
