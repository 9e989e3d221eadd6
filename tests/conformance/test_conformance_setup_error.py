"""A target the suite cannot set up stops the run at once, with the whole message, said once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from memkv.cli import main as cli


def test_a_single_credential_key_file_stops_before_any_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "client.key"
    key_file.write_text("a-writer:" + "00" * 32 + "\n")
    started = time.monotonic()
    status = cli.main(["conformance", "--target", f"memkv+tcp://127.0.0.1:9?key_file={key_file}", "--certify"])
    elapsed = time.monotonic() - started
    out = capsys.readouterr()
    assert status != 0
    text = out.out + out.err
    setup_lines = [line for line in text.splitlines() if "setup error" in line]
    assert len(setup_lines) == 1, text
    # the remedy is there in full, not cut off
    assert "python -m memkv.conformance.targets.server keys --out pool.yaml" in setup_lines[0]
    assert "give it to the server too" in setup_lines[0]
    assert "memkv conformance: 0 checks" in text
    assert elapsed < 30
