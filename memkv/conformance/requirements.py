"""The machine-readable requirement list (spec/requirements.yaml) and the suite's exclusions."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from pathlib import Path
from typing import Any

import yaml

PACKAGE_DIR = Path(__file__).resolve().parent


def _spec_dir() -> Path:
    """spec/ of a source checkout, else the copy installed as the data package memkv_spec."""
    checkout = PACKAGE_DIR.parent / "spec"
    if (checkout / "requirements.yaml").is_file():
        return checkout
    spec = importlib.util.find_spec("memkv_spec")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("memkv's spec files are missing: reinstall memkv")
    return Path(next(iter(spec.submodule_search_locations)))


SPEC_DIR = _spec_dir()
REQUIREMENTS_PATH = SPEC_DIR / "requirements.yaml"
EXCLUSIONS_PATH = PACKAGE_DIR / "exclusions.yaml"

# Status lattice, worst wins when rolled up (OCI distribution-spec style).
STATUS_ORDER = {"skip": 0, "pass": 1, "fail": 2, "error": 3}


def worst(statuses: list[str] | tuple[str, ...] | set[str]) -> str:
    """The worst status of `statuses` by the lattice skip < pass < fail < error; skip when empty."""
    result = "skip"
    for status in statuses:
        if STATUS_ORDER[status] > STATUS_ORDER[result]:
            result = status
    return result


@dataclasses.dataclass(frozen=True, slots=True)
class Requirement:
    id: str
    level: str
    profile: str
    section: str
    summary: str
    since: str = "1.0"
    """The spec version that added the requirement: a target declaring an older one is not checked for it."""

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    def applies_to(self, declared: tuple[int, int] | None) -> bool:
        """Whether a target declaring `declared` (major, minor) must meet it; an unreadable declaration
        is held to every requirement."""
        return declared is None or version_tuple(self.since) <= declared


@dataclasses.dataclass(frozen=True, slots=True)
class Exclusion:
    id: str
    reason: str
    checked_by: str = ""


def _load_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def version_tuple(version: str) -> tuple[int, int]:
    """ "1.2" -> (1, 2); ValueError for anything that is not major.minor."""
    major, minor = version.strip().split(".")
    return int(major), int(minor)


def declared_version(version: str) -> tuple[int, int] | None:
    """The version a target declares in `capabilities` (MKV-VER-001), as the suite reads it: None, so
    that every requirement applies, when it is not major.minor of the suite's own major or is newer
    than the suite."""
    try:
        declared = version_tuple(version)
    except ValueError:
        return None
    suite = version_tuple(spec_version())
    return declared if declared[0] == suite[0] and declared <= suite else None


@functools.cache
def spec_version() -> str:
    return str(_load_yaml(REQUIREMENTS_PATH).get("spec_version", "unknown"))


@functools.cache
def requirements() -> dict[str, Requirement]:
    """Every requirement of the spec by ID, in spec order."""
    raw = _load_yaml(REQUIREMENTS_PATH)
    result: dict[str, Requirement] = {}
    for entry in raw["requirements"]:
        req = Requirement(str(entry["id"]), str(entry["level"]), str(entry["profile"]),
                          str(entry.get("section", "")), str(entry.get("summary", "")), str(entry.get("since", "1.0")))
        result[req.id] = req
    return result


@functools.cache
def exclusions() -> dict[str, Exclusion]:
    """Requirements deliberately not checked against targets, each with its reason."""
    raw = _load_yaml(EXCLUSIONS_PATH) or {}
    result: dict[str, Exclusion] = {}
    for entry in raw.get("exclusions", []):
        result[str(entry["id"])] = Exclusion(str(entry["id"]), str(entry.get("reason", "")).strip(),
                                             str(entry.get("checked_by", "")).strip())
    return result


def profile_of(ids: list[str] | tuple[str, ...]) -> str:
    """The profile a test belongs to: the first non-core profile among its requirements, else core."""
    reqs = requirements()
    for req_id in ids:
        req = reqs.get(req_id)
        if req is not None and req.profile != "core":
            return req.profile
    return "core"


__all__ = ["EXCLUSIONS_PATH", "Exclusion", "REQUIREMENTS_PATH", "Requirement", "STATUS_ORDER", "declared_version",
           "exclusions", "profile_of", "requirements", "spec_version", "version_tuple", "worst"]
