"""What memkv and `memkv conformance` import at run time is installed by `pip install .` (no extra)."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DISTRIBUTIONS = {"yaml": "pyyaml", "prometheus_client": "prometheus-client", "typing_extensions": "typing-extensions",
                 "pydantic_settings": "pydantic-settings", "pythonjsonlogger": "python-json-logger",
                 "elftools": "pyelftools"}
# imported only inside an optional path that says what to install when it is missing
OPTIONAL = {"nixl", "nixl_cu12", "pyverbs", "redis", "mooncake", "matplotlib", "h11", "botocore", "awscrt", "boto3"}
# imported only by the engine adapters (memkv/integrations/), which only the engine itself loads
OPTIONAL |= {"lmcache", "vllm", "sglang", "torch"}


def _top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_third_party_import_of_the_package_and_the_suite_is_a_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {Requirement(text).name.lower() for text in project["dependencies"]}
    imported: set[str] = set()
    for folder in ("memkv",):
        for path in (ROOT / folder).rglob("*.py"):
            imported |= _top_level_imports(path)
    third_party = {name for name in imported
                   if name not in sys.stdlib_module_names and name not in ("memkv", "memkv_spec")}
    missing = sorted(name for name in third_party - OPTIONAL
                     if DISTRIBUTIONS.get(name, name).lower().replace("_", "-") not in declared)
    assert not missing, f"imported at run time but not in [project].dependencies: {missing}"
