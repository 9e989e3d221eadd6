"""The `memkv` command line (memkv.cli.main)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import memkv
from memkv.cli.main import build_parser, main

TINY = ["--requests", "12", "--block-size", "64KiB", "--capacity", "32MiB", "--quiet"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"memkv {memkv.__version__}"


def test_every_subcommand_has_run() -> None:
    parser = build_parser()
    for command in ("demo", "bench"):
        args = parser.parse_args([command])
        assert callable(args.handler)


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_demo_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--synthetic", "--store", str(tmp_path / "s"), "--json", *TINY]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert report["verification"]["ok"]
    assert out.err == ""  # --quiet: no progress


def test_demo_text_and_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["demo", "--synthetic", "--store", str(tmp_path / "s"), *TINY[:-1]]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "hit" in out.out and "verified" in out.out
    assert "memkv demo:" in out.err  # progress goes to stderr


def test_store_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MEMKV_DATA_DIR", str(tmp_path / "env-store"))
    assert main(["demo", "--synthetic", "--json", *TINY]) == 0
    assert json.loads(capsys.readouterr().out)["store"]["path"] == str(tmp_path / "env-store")


@pytest.mark.parametrize("argv, code", [
    (["bench", "--backend", "nope"], "INVALID_ARGUMENT"),
    (["bench", "--sizes", "3000"], "INVALID_ARGUMENT"),
    (["demo", "--trace", "/nonexistent/trace.jsonl"], "INVALID_ARGUMENT"),
])
def test_memkv_errors_exit_2_with_code(argv: list[str], code: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"memkv: {code}: ")
    assert "Traceback" not in err


def test_malformed_trace_exits_2_naming_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "bad.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [1]}\n[]\n')
    assert main(["demo", "--trace", str(trace), "--store", str(tmp_path / "s"), *TINY]) == 2
    assert "memkv: INVALID_ARGUMENT: bad.jsonl line 2" in capsys.readouterr().err


def test_console_entry_point_error_has_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "memkv.cli.main", "bench", "--backend", "nope"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("memkv: INVALID_ARGUMENT: unknown backend 'nope'")
    assert "Traceback" not in proc.stderr


def _modules_loaded_by(argv: list[str]) -> set[str]:
    """The memkv modules a fresh interpreter has loaded after `memkv <argv>` (help and version exit)."""
    script = ("import sys\nfrom memkv.cli.main import main\n"
              "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
              "print(' '.join(m for m in sys.modules if m.startswith('memkv')))")
    proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, check=True)
    return set(proc.stdout.splitlines()[-1].split())


def test_version_loads_no_subcommand() -> None:
    loaded = _modules_loaded_by(["--version"])
    roles = {m for m in loaded if m.split(".")[1:2] and m.split(".")[1] in
             ("store", "server", "wire", "backends", "conformance", "plan", "bench", "torture", "nixl")}
    assert "memkv.cli.main" in loaded and roles == set()
    assert not any(m.startswith("memkv.cli.") and m != "memkv.cli.main" for m in loaded)


def test_a_command_loads_only_its_own_module() -> None:
    loaded = _modules_loaded_by(["serve", "--help"])
    assert "memkv.cli.serve" in loaded
    others = {m for m in loaded if m.startswith("memkv.cli.") and m not in ("memkv.cli.main", "memkv.cli.serve")}
    assert others == set()
    assert not any(m.startswith(("memkv.conformance", "memkv.plan", "memkv.bench")) for m in loaded)
