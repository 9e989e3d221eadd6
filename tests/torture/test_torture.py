"""`memkv torture` in its short form (CI): crash loop, parser fuzzer, socket fuzzing, soak.

The fault sweep and the power-cut simulator run in tests/store/test_store_faults.py and
tests/store/test_powercut.py. The full campaign is on demand (docs/reliability.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memkv.cli.main import main
from memkv.torture.fuzz import fuzz
from memkv.wire import messages


@pytest.mark.requirement("MKV-DUR-007", "MKV-DUR-003", "MKV-WIRE-019", "MKV-WIRE-017", "MKV-SEC-050")
def test_the_short_campaign_reports_no_failure(tmp_path: Path) -> None:
    out = tmp_path / "torture.json"
    status = main(["torture", "--scenario", "crash", "--scenario", "fuzz", "--scenario", "socket-fuzz",
                   "--scenario", "soak", "--crash-cycles", "2", "--fuzz-inputs", "5000", "--socket-frames", "150",
                   "--connections", "16", "--soak-seconds", "2", "--workdir", str(tmp_path), "--json", str(out)])
    report = json.loads(out.read_text())
    by_name = {r["scenario"]: r for r in report["results"]}
    assert status == 0 and report["failures"] == 0, report
    crash = by_name["crash-loop"]
    assert crash["cycles"] == 2 and crash["acknowledged_puts"] > 0 and crash["lost"] == 0
    assert by_name["parser-fuzz"]["inputs"] == 5000 and by_name["parser-fuzz"]["crashes"] == 0
    socket_fuzz = by_name["socket-fuzz"]
    assert socket_fuzz["answered"] + socket_fuzz["closed"] > 100 and socket_fuzz["server_still_serving"]
    assert by_name["connection-soak"]["operations"] > 0 and by_name["connection-soak"]["wrong_bytes"] == 0


@pytest.mark.requirement("MKV-WIRE-019")
def test_the_parser_fuzzer_finds_a_planted_unchecked_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader that trusts the item count (indexes past the end) is found: the fuzzer can fail."""

    def trusting_flags(self: messages.MetaReader) -> list[bool]:
        return [bool(self.raw[self.pos + i]) for i in range(self.count)]

    monkeypatch.setattr(messages.MetaReader, "flags", trusting_flags)
    found = fuzz(5000, seed=3)
    assert found["crashes"] > 0 and any("IndexError" in kind for kind in found["crash_samples"])
