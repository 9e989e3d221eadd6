"""`memkv completion bash` completes commands and every flag, `memkv serve`'s settings included."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from memkv.cli.main import main


def _complete(script: Path, words: list[str]) -> list[str]:
    line = " ".join(words)
    program = (f'source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE="{line}"; '
               f'COMP_POINT={len(line)}; _shtab_memkv memkv {words[-1]} {words[-2]}; echo "${{COMPREPLY[@]}}"')
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completion_of_commands_and_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("bash") is None:
        pytest.skip("no bash on this machine")
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "memkv.bash"
    script.write_text(capsys.readouterr().out)
    assert sorted(_complete(script, ["memkv", "co"])) == ["completion", "conformance", "conformance-client"]
    assert _complete(script, ["memkv", "serve", "--log-f"]) == ["--log-format"]
    assert "--admin-tls-cert" in _complete(script, ["memkv", "serve", "--admin-t"])
    assert "--ca-file" in _complete(script, ["memkv", "admin", "--ca"])
