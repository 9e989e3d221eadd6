"""Where a certification test writes its conformance report: CI collects them as artefacts."""

from __future__ import annotations

import os
from pathlib import Path


def report_dir(tmp_path: Path, name: str) -> Path:
    """$MEMKV_CONFORMANCE_REPORTS/<name> when set (.ci/run sets it), else a temporary directory."""
    base = os.environ.get("MEMKV_CONFORMANCE_REPORTS")
    return Path(base) / name if base else tmp_path / "report"
