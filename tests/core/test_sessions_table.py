"""spec/sessions.yaml states exactly the table of memkv.sessions (MKV-SES-001)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml

from memkv.errors import ErrorCode, MemkvError
from memkv.sessions import (
    PINNING_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    SessionEvent,
    SessionState,
    next_state,
)

SPEC = Path(__file__).resolve().parents[2] / "spec"

pytestmark = pytest.mark.requirement("MKV-SES-001")


@pytest.fixture(scope="module")
def table() -> dict[str, Any]:
    with open(SPEC / "sessions.yaml", encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict)
    return doc


def test_states_and_events_are_the_enums(table: dict[str, Any]) -> None:
    assert table["states"] == [s.value for s in SessionState]
    assert table["events"] == [e.value for e in SessionEvent]
    assert table["initial_state"] == SessionState.OPEN.value
    assert set(table["client_events"]) == {e.value for e in SessionEvent} - {"expire"}


def test_transitions_equal_the_code(table: dict[str, Any]) -> None:
    rows = [(t["from"], t["event"], t["to"]) for t in table["transitions"]]
    assert len(rows) == len(set(rows)), "a transition is listed twice"
    from_yaml = {(SessionState(f), SessionEvent(e)): SessionState(t) for f, e, t in rows}
    assert from_yaml == TRANSITIONS


def test_pinning_and_terminal_states(table: dict[str, Any]) -> None:
    assert {SessionState(s) for s in table["pinning_states"]} == PINNING_STATES
    assert {SessionState(s) for s in table["terminal_states"]} == TERMINAL_STATES
    # Terminal means: no transition leaves the state.
    for state in TERMINAL_STATES:
        assert not any(f is state for f, _ in TRANSITIONS)


def test_spec_text_table_equals_the_yaml(table: dict[str, Any]) -> None:
    """The table in section 5 of the spec text lists the same transitions."""
    text = (SPEC / "memkv-spec.md").read_text(encoding="utf-8")
    section = text.split("## 5. Sessions", 1)[1].split("\n## ", 1)[0]
    rows = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in table["states"]:
            rows.add(tuple(cells))
    assert rows == {(t["from"], t["event"], t["to"]) for t in table["transitions"]}


def _expected_error(table: dict[str, Any], state: str) -> ErrorCode:
    refused = table["refused"]
    return ErrorCode[refused["by_state"].get(state, refused["default"])]


@pytest.mark.parametrize(("state", "event"), list(itertools.product(SessionState, SessionEvent)))
def test_every_pair_allowed_or_refused_with_the_stated_code(
    table: dict[str, Any], state: SessionState, event: SessionEvent
) -> None:
    allowed = {(t["from"], t["event"]): t["to"] for t in table["transitions"]}
    if (state.value, event.value) in allowed:
        assert next_state(state, event).value == allowed[(state.value, event.value)]
        return
    with pytest.raises(MemkvError) as info:
        next_state(state, event)
    assert info.value.code is _expected_error(table, state.value)


@pytest.mark.requirement("MKV-SES-001", "MKV-SES-008")
def test_expired_refuses_with_session_expired(table: dict[str, Any]) -> None:
    assert table["refused"]["by_state"] == {"expired": "SESSION_EXPIRED"}
    assert table["refused"]["default"] == "INVALID_SESSION_STATE"
    assert table["expired_retention_s"] >= 3600


@pytest.mark.requirement("MKV-SES-001", "MKV-SES-007", "MKV-SES-009")
def test_lifetime_constants_match_the_engine(table: dict[str, Any]) -> None:
    from memkv.store import engine

    assert table["max_ttl_s"] == engine.MAX_TTL_S
    assert table["expired_retention_s"] == engine.EXPIRED_SESSION_RETENTION_S
    assert table["on_terminal"] == {"closed": "removed", "expired": "retained"}
