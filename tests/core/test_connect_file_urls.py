"""file:// URL edge cases: each names what is wrong instead of doing something else (issue 12)."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import pytest

import memkv
from memkv.errors import ErrorCode, MemkvError


def _refused(url: str, **options: object) -> MemkvError:
    with pytest.raises(MemkvError) as caught:
        memkv.connect(url, **options)  # type: ignore[arg-type]
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    return caught.value


@pytest.mark.requirement("MKV-CAP-033")
def test_a_relative_path_is_refused_not_read_as_a_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    name = f"memkv-test-{uuid.uuid4().hex}"  # today's code would create /<name> at the root
    error = _refused(f"file://relative/{name}?capacity=8MiB")
    assert f"file:relative/{name}" in error.message and "three" in error.message
    assert not (tmp_path / "relative").exists() and not Path("/", name).exists()


@pytest.mark.requirement("MKV-CAP-033")
def test_the_suggested_relative_form_opens_under_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = memkv.connect("file:relative/store?capacity=8MiB&unit=256KiB")
    store.close()
    assert (tmp_path / "relative" / "store" / "device.img").exists()


@pytest.mark.requirement("MKV-CAP-033")
@pytest.mark.parametrize("option", [{"key": "a-writer:00"}, {"key_file": "x.key"}])
def test_a_key_on_a_file_url_is_refused_with_the_reason(tmp_path: Path, option: dict[str, str]) -> None:
    error = _refused(f"file://{tmp_path}/s?capacity=8MiB", **option)
    assert "no authentication" in error.message
    assert not (tmp_path / "s").exists()


@pytest.mark.requirement("MKV-CAP-033")
def test_a_directory_that_cannot_be_created_is_named() -> None:
    error = _refused("file:///proc/nope/store?capacity=8MiB")
    assert "/proc/nope/store" in error.message


@pytest.mark.requirement("MKV-CAP-034")
def test_reopening_with_another_capacity_is_refused(tmp_path: Path) -> None:
    memkv.connect(f"file://{tmp_path}/s?capacity=8MiB&unit=256KiB").close()
    error = _refused(f"file://{tmp_path}/s?capacity=16MiB&unit=256KiB")
    assert str(8 * 1024 * 1024) in error.message
    # the same capacity, or none, reopens it
    memkv.connect(f"file://{tmp_path}/s?capacity=8MiB&unit=256KiB").close()
    memkv.connect(f"file://{tmp_path}/s?unit=256KiB").close()


@pytest.mark.requirement("MKV-CAP-035")
def test_a_fresh_data_directory_over_a_used_device_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    device = tmp_path / "device.img"
    with open(device, "wb") as handle:
        os.posix_fallocate(handle.fileno(), 0, 8 * 1024 * 1024)
    first = memkv.connect(f"file://{tmp_path}/data-1?device={device}&unit=256KiB", format_device=True)
    first.put([memkv.PutItem(bytes(16), b"x" * 4096)])
    first.close()
    with caplog.at_level(logging.WARNING):
        memkv.connect(f"file://{tmp_path}/data-2?device={device}&unit=256KiB").close()
    assert any("no index for it" in r.getMessage() and str(device) in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # the directory it was created with: no warning
        memkv.connect(f"file://{tmp_path}/data-1?device={device}&unit=256KiB").close()
    assert not [r for r in caplog.records if "no index" in r.getMessage()]


@pytest.mark.requirement("MKV-CAP-030")
def test_a_capacity_larger_than_the_free_space_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    with pytest.raises(MemkvError) as caught:
        memkv.connect(f"file://{tmp_path}/s?capacity={free * 2}")
    assert caught.value.code is ErrorCode.CAPACITY_EXCEEDED
    assert str(free * 2) in caught.value.message and "free" in caught.value.message
    assert not (tmp_path / "s" / "device.img").exists()
    # and the directory is usable right away (no 0-byte device blocking later starts)
    store = memkv.connect(f"file://{tmp_path}/s?capacity=8MiB&unit=256KiB")
    store.close()
