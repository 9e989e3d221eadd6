"""`memkv serve` settings: one model for config file, MEMKV_* environment and flags (issue 12)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from memkv.cli import main as cli
from memkv.errors import ErrorCode, MemkvError
from memkv.server.logs import configure_logging
from memkv.server.settings import ServeSettings, example_file, load_settings, markdown_reference

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MEMKV_"):
            monkeypatch.delenv(name)


def test_reference_page_and_example_file_are_generated_from_the_model() -> None:
    assert (DOCS / "settings.md").read_text(encoding="utf-8") == markdown_reference()
    assert (DOCS / "memkv.example.yaml").read_text(encoding="utf-8") == example_file()


def test_every_setting_is_a_flag_with_help() -> None:
    parser = cli.build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    help_text = serve.format_help()
    for name in ServeSettings.model_fields:
        assert f"--{name.replace('_', '-')}" in help_text and f"MEMKV_{name.upper()}" in help_text


def test_the_example_file_with_every_line_uncommented_gives_the_defaults(tmp_path: Path) -> None:
    text = "\n".join(line[2:] if line.startswith("# ") and ": " in line and not line.startswith("# memkv")
                     and line[2:].split(":")[0].isidentifier() else line for line in example_file().splitlines())
    config = tmp_path / "memkv.yaml"
    config.write_text(text)
    assert load_settings({}, str(config)) == ServeSettings(data="./memkv-data")


def test_flags_override_environment_which_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "memkv.yaml"
    config.write_text(yaml.safe_dump({"data": "/from/file", "capacity": "2GiB", "listen": "127.0.0.1:7000",
                                      "log_level": "debug"}))
    monkeypatch.setenv("MEMKV_CAPACITY", "3GiB")
    monkeypatch.setenv("MEMKV_LISTEN", "127.0.0.1:7100")
    settings = load_settings({"listen": "127.0.0.1:7200", "data": None}, str(config))
    assert (settings.data, settings.capacity, settings.listen, settings.log_level) == (
        "/from/file", 3 * 1024**3, "127.0.0.1:7200", "DEBUG")
    server = settings.server_config()
    assert (server.data_dir, server.capacity, server.listen_address()) == ("/from/file", 3 * 1024**3,
                                                                           ("127.0.0.1", 7200))


def test_toml_files_use_the_same_names(tmp_path: Path) -> None:
    config = tmp_path / "memkv.toml"
    config.write_text('data = "/d"\nkeys = "/k.yaml"\nidle_timeout = 30\nnixl = "off"\n')
    settings = load_settings({}, str(config))
    assert (settings.keys, settings.idle_timeout, settings.nixl) == ("/k.yaml", 30.0, "off")


def _refused(flags: dict[str, object], config: Path | None = None) -> str:
    with pytest.raises(MemkvError) as caught:
        load_settings(flags, str(config) if config else None)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    return caught.value.message


def test_invalid_values_are_refused_naming_the_setting_and_its_sources() -> None:
    message = _refused({"data": "/d", "log_level": "chatty"})
    assert "log_level" in message and "--log-level" in message and "MEMKV_LOG_LEVEL" in message
    assert "capacity" in _refused({"data": "/d", "capacity": "lots"})
    assert "max_connections" in _refused({"data": "/d", "max_connections": "0"})
    assert "data" in _refused({})


def test_an_invalid_environment_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMKV_NIXL", "sometimes")
    assert "nixl" in _refused({"data": "/d"})


def test_old_and_unknown_file_names_are_refused_with_the_right_name(tmp_path: Path) -> None:
    config = tmp_path / "old.yaml"
    config.write_text("data_dir: /d\n")
    message = _refused({}, config)
    assert "'data_dir' is now 'data'" in message and "--data" in message
    config.write_text("data: /d\ncolour: blue\n")
    assert "colour" in _refused({}, config)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    nixl_level = logging.getLogger("nixl").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("nixl").setLevel(nixl_level)


def test_json_log_lines(restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("memkv.server").info("closing connection %s", "x")
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert record["message"] == "closing connection x"
    assert record["level"] == "INFO" and record["logger"] == "memkv.server" and "time" in record


def test_quiet_silences_info_lines_also_of_nixl(restore_logging: None, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NIXL_LOG_LEVEL", raising=False)
    monkeypatch.delenv("UCX_LOG_LEVEL", raising=False)
    configure_logging("INFO", "text", quiet=True)
    logging.getLogger("memkv.server").info("not shown")
    logging.getLogger("memkv.server").warning("shown")
    assert "not shown" not in capsys.readouterr().err
    assert os.environ["NIXL_LOG_LEVEL"] == "WARN" and os.environ["UCX_LOG_LEVEL"] == "warn"
    assert not logging.getLogger("nixl").isEnabledFor(logging.INFO)


def test_quiet_server_prints_no_nixl_info_lines(tmp_path: Path) -> None:
    if importlib.util.find_spec("nixl_cu12") is None and importlib.util.find_spec("nixl") is None:
        pytest.skip("NIXL is not installed (pip install --no-deps 'nixl-cu12>=1.5.1')")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMKV_", "NIXL_", "UCX_LOG"))}
    outputs = {}
    for quiet in (False, True):
        args = [sys.executable, "-m", "memkv.server", "--data", str(tmp_path / f"d{quiet}"), "--capacity", "64MiB",
                "--insecure-no-auth", "--listen", "127.0.0.1:0", "--nixl", "on", "--nixl-staging", "16MiB"]
        process = subprocess.Popen([*args, *(["--quiet"] if quiet else [])], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, env=env | {"UCX_TLS": "tcp"})
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "listening on" in line:
                break
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)  # its exit status is issue 8's (NIXL teardown)
        outputs[quiet] = "".join(lines) + rest
    assert "NIXL INFO" in outputs[False], outputs[False]  # the lines --quiet must remove do exist
    assert "NIXL INFO" not in outputs[True] and " INFO " not in outputs[True], outputs[True]
