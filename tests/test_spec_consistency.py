"""spec/requirements.yaml, the spec text and the code agree (MKV-ERR-001, MKV-PRO-001, MKV-CAP-001).

Tag format (spec/README.md): a requirement is stated once, in a paragraph that begins with
`**MKV-AREA-NNN** (LEVEL):`. Its statement runs to the next tag, heading or `>` note.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from memkv.blocks import Limits
from memkv.errors import ErrorCode
from memkv.transport import PROFILES, SPEC_VERSION

ROOT = Path(__file__).resolve().parent.parent
SPEC_DIR = ROOT / "spec"
MAIN_TEXT = SPEC_DIR / "memkv-spec.md"
TEXTS = [MAIN_TEXT, SPEC_DIR / "wire.md", SPEC_DIR / "s3.md", SPEC_DIR / "cluster.md"]

ID_RE = re.compile(r"^MKV-[A-Z][A-Z0-9]{1,4}-\d{3}$")
TAG_RE = re.compile(r"\*\*(MKV-[A-Z][A-Z0-9]*-\d{3})\*\* \((MUST|SHOULD|MAY)\):")
BOLD_ID_RE = re.compile(r"\*\*(MKV-[^*]*)\*\*")
BCP14_RE = re.compile(r"\b(MUST|SHALL|SHOULD|MAY|REQUIRED|RECOMMENDED|OPTIONAL)\b")
LEVELS = ("MUST", "SHOULD", "MAY")
SPEC_PROFILES = ("core", "sessions", "durable", "shared", "secure", "admin", "wire", "nixl", "cluster")


# ---- parsing ------------------------------------------------------------------------------------
def _requirements() -> list[dict[str, Any]]:
    doc = yaml.safe_load((SPEC_DIR / "requirements.yaml").read_text(encoding="utf-8"))
    reqs: list[dict[str, Any]] = doc["requirements"]
    return reqs


class Statement:
    def __init__(self, path: Path, rid: str, level: str, heading: str) -> None:
        self.path, self.id, self.level, self.heading = path, rid, level, heading
        self.lines: list[str] = []

    @property
    def body(self) -> str:
        return "\n".join(self.lines)


def _parse(path: Path) -> tuple[list[Statement], list[tuple[str, int, str]]]:
    """Tagged statements, and untagged lines as (heading, line number, text)."""
    statements: list[Statement] = []
    untagged: list[tuple[str, int, str]] = []
    heading, current = "", None
    in_code = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and line.startswith("#"):
            heading, current = line.lstrip("#").strip(), None
            continue
        if line.startswith(">"):
            current = None
            untagged.append((heading, number, line))
            continue
        match = TAG_RE.match(line)
        if match:
            current = Statement(path, match.group(1), match.group(2), heading)
            statements.append(current)
            line = line[match.end():]
        if current is None:
            untagged.append((heading, number, line))
        else:
            current.lines.append(line)
    return statements, untagged


def _texts() -> list[Path]:
    return list(TEXTS)


def _all_statements() -> list[Statement]:
    return [s for path in _texts() for s in _parse(path)[0]]


def _section(text: str, title: str) -> str:
    return text.split(f". {title}\n", 1)[1].split("\n## ", 1)[0]


def _table_rows(section: str, columns: int) -> list[list[str]]:
    rows = []
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|--") and not line.startswith("|-"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == columns and not set(cells[0]) <= set("-: "):
                rows.append(cells)
    return rows[1:]  # drop the header row


REQUIREMENTS = _requirements()
BY_ID = {r["id"]: r for r in REQUIREMENTS}


# ---- requirements.yaml on its own -----------------------------------------------------------------
def test_ids_unique_and_well_formed() -> None:
    counts = Counter(r["id"] for r in REQUIREMENTS)
    assert [i for i, n in counts.items() if n > 1] == []
    assert [i for i in counts if not ID_RE.match(i)] == []


def test_fields_levels_and_profiles() -> None:
    assert set(SPEC_PROFILES) == set(PROFILES)
    for r in REQUIREMENTS:
        assert {"id", "level", "profile", "section", "summary"} <= set(r), r
        assert r["level"] in LEVELS, r["id"]
        assert r["profile"] in SPEC_PROFILES, r["id"]
        assert isinstance(r["summary"], str) and r["summary"].strip(), r["id"]
        assert isinstance(r["section"], str) and r["section"].strip(), r["id"]


def test_spec_versions_agree() -> None:
    doc = yaml.safe_load((SPEC_DIR / "requirements.yaml").read_text(encoding="utf-8"))
    sessions = yaml.safe_load((SPEC_DIR / "sessions.yaml").read_text(encoding="utf-8"))
    assert str(doc["spec_version"]) == SPEC_VERSION == str(sessions["spec_version"])
    assert MAIN_TEXT.read_text(encoding="utf-8").splitlines()[0] == f"# memkv specification, version {SPEC_VERSION}"


# ---- the text and the yaml -------------------------------------------------------------------------
def test_every_tag_is_well_formed() -> None:
    """A bold requirement ID outside code appears only as a tag that begins its line."""
    for path in _texts():
        in_code = False
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith("```"):
                in_code = not in_code
            if in_code or line.startswith((" ", "\t")) or not BOLD_ID_RE.search(line):
                continue
            assert len(BOLD_ID_RE.findall(line)) == 1 and TAG_RE.match(line), (
                f"{path.name}:{number}: a tag is a line that begins with **MKV-AREA-NNN** (LEVEL):")


def test_every_requirement_stated_exactly_once_and_nothing_else() -> None:
    counts = Counter(s.id for s in _all_statements())
    assert [i for i, n in counts.items() if n > 1] == [], "tagged more than once"
    assert sorted(set(BY_ID) - set(counts)) == [], "in requirements.yaml but not in the spec text"
    assert sorted(set(counts) - set(BY_ID)) == [], "in the spec text but not in requirements.yaml"


def test_stated_level_matches_the_yaml() -> None:
    for s in _all_statements():
        assert s.level == BY_ID[s.id]["level"], f"{s.id}: text says {s.level}, yaml {BY_ID[s.id]['level']}"
        assert re.search(rf"\b{s.level}\b", s.body), f"{s.id}: its statement never uses {s.level}"
        stronger = LEVELS[: LEVELS.index(s.level)]
        used = set(BCP14_RE.findall(s.body))
        assert not used & set(stronger), f"{s.id}: level {s.level} but the statement uses {used & set(stronger)}"


def test_requirement_sits_in_its_section() -> None:
    for s in _parse(MAIN_TEXT)[0]:
        title = re.sub(r"^\d+\.\s*", "", s.heading)
        assert title.startswith(BY_ID[s.id]["section"]), f"{s.id} is under {s.heading!r}"


def test_bcp14_keywords_only_in_requirements() -> None:
    """Capitalised key words appear only inside tagged statements (and in Conventions)."""
    text = MAIN_TEXT.read_text(encoding="utf-8")
    assert "RFC 2119" in text and "RFC 8174" in text and "BCP 14" in text
    stray = [(h, n, line) for h, n, line in _parse(MAIN_TEXT)[1]
             if BCP14_RE.search(line) and not h.endswith("Conventions") and not h.startswith("memkv specification")]
    assert stray == []


# ---- the text and the code -------------------------------------------------------------------------
@pytest.mark.requirement("MKV-ERR-001")
def test_error_table_is_exactly_the_error_codes() -> None:
    rows = _table_rows(_section(MAIN_TEXT.read_text(encoding="utf-8"), "Errors"), 3)
    assert [(int(code), name) for code, name, _ in rows] == [(c.value, c.name) for c in ErrorCode]
    assert all(meaning for _, _, meaning in rows)


@pytest.mark.requirement("MKV-ERR-001")
def test_every_error_name_in_the_text_exists() -> None:
    for path in _texts():
        names = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", path.read_text(encoding="utf-8")))
        assert names - set(ErrorCode.__members__) == set(), path.name


@pytest.mark.requirement("MKV-CAP-001")
def test_limits_table_is_the_default_limits() -> None:
    rows = _table_rows(_section(MAIN_TEXT.read_text(encoding="utf-8"), "Capacity and eviction"), 3)
    stated = {name.strip("`"): int(value.split()[0]) for name, _, value in rows}
    assert stated == Limits().to_dict()
    assert Limits().max_block_size >= 16 * 1024 * 1024


@pytest.mark.requirement("MKV-PRO-001")
def test_profiles_table_lists_every_profile() -> None:
    rows = _table_rows(_section(MAIN_TEXT.read_text(encoding="utf-8"), "Profiles"), 3)
    assert [name.strip("`") for name, _, _ in rows] == list(SPEC_PROFILES)


@pytest.mark.requirement("MKV-KEY-004", "MKV-KEY-005", "MKV-KEY-006")
def test_worked_examples_of_the_keys_section() -> None:
    from memkv.keys import model_fingerprint

    text = MAIN_TEXT.read_text(encoding="utf-8")
    fp = model_fingerprint("meta-llama/Llama-3.1-8B-Instruct", dtype="bfloat16", tp_size=1, tp_rank=0)
    assert f"the fingerprint `{fp.hex()}`" in text
    for tag in (b"MKV1", b"MKV1-SEQ", b"MKV1-EXT"):
        assert f'`"{tag.decode()}"` is the {len(tag)} ASCII bytes {tag.hex(" ")}' in text


def _cited_by_tests() -> dict[str, set[str]]:
    """Requirement IDs named by test markers (requirement(...), or a decorator alias like @req(...))."""
    cited: dict[str, set[str]] = {}
    for folder in ("tests", "memkv/conformance"):
        for path in (ROOT / folder).rglob("*.py"):
            source = path.read_text(encoding="utf-8")
            calls = re.findall(r"requirement\(([^)]*)\)", source) + re.findall(r"^\s*@[\w.]+\(([^)]*)\)", source, re.M)
            for call in calls:
                for rid in re.findall(r"[\"'](MKV-[A-Z][A-Z0-9]*-\d{3})[\"']", call):
                    cited.setdefault(rid, set()).add(str(path.relative_to(ROOT)))
    return cited


def test_tests_cite_only_known_requirements() -> None:
    """A test (here or in the conformance suite) citing an unknown ID fails the build."""
    unknown = {rid: sorted(paths) for rid, paths in _cited_by_tests().items() if rid not in BY_ID}
    assert unknown == {}


def test_every_must_is_named_by_a_test() -> None:
    """Every MUST of the spec is checked by at least one test marker that names its ID."""
    cited = _cited_by_tests()
    untested = [r["id"] for r in REQUIREMENTS if r["level"] == "MUST" and r["id"] not in cited]
    assert untested == []
