"""Where a nested conformance run of a test writes its report (CI collects them as artefacts); the
per-backend certifications write theirs themselves (memkv/conformance/per_backend.py)."""

from __future__ import annotations

import os
from pathlib import Path


def report_dir(tmp_path: Path, name: str) -> Path:
    """$MEMKV_CONFORMANCE_REPORTS/<name> when set (.ci/run sets it), else a temporary directory."""
    base = os.environ.get("MEMKV_CONFORMANCE_REPORTS")
    return Path(base) / name if base else tmp_path / "report"
