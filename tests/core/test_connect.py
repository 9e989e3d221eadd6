"""memkv.connect picks the backend from the URL scheme and refuses what it does not know."""

from __future__ import annotations

from pathlib import Path

import pytest

import memkv
from memkv.errors import ErrorCode, MemkvError
from memkv.store.embedded import FileTransport


@pytest.mark.requirement("MKV-CAP-005")
def test_file_url_opens_the_embedded_backend_with_its_options(tmp_path: Path) -> None:
    store = memkv.connect(f"file://{tmp_path}/s?capacity=8MiB&unit=256KiB", namespace="ns-a")
    try:
        assert isinstance(store, FileTransport)
        caps = store.capabilities()
        assert caps.backend == "file" and caps.capacity_bytes is not None
        assert caps.capacity_bytes <= 8 * 1024 * 1024
        assert store.namespace == "ns-a"
    finally:
        store.close()


@pytest.mark.requirement("MKV-CAP-005")
@pytest.mark.parametrize("url", [
    "ftp://host/store",
    "memkv+udp://127.0.0.1:9900",
    "file://",
    "/no/scheme/at/all",
])
def test_unknown_schemes_and_empty_paths_are_invalid_arguments(url: str) -> None:
    with pytest.raises(MemkvError) as caught:
        memkv.connect(url)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT


@pytest.mark.requirement("MKV-CAP-005")
@pytest.mark.parametrize("query", ["colour=blue", "capacity=lots", "flush_interval=soon"])
def test_unknown_or_malformed_file_options_are_invalid_arguments_and_create_nothing(
        tmp_path: Path, query: str) -> None:
    target = tmp_path / "never"
    with pytest.raises(MemkvError) as caught:
        memkv.connect(f"file://{target}?{query}")
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    assert not target.exists()
