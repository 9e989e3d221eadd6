"""put_chain stores a prefix chain with the metadata invalidation needs; the README example uses it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import memkv
from memkv.errors import ErrorCode, MemkvError
from memkv.store.embedded import FileTransport

README = Path(__file__).resolve().parents[2] / "README.md"


def _chain(tokens: int = 64) -> tuple[bytes, list[bytes]]:
    fp = memkv.model_fingerprint("test-model", dtype="bf16")
    return fp, memkv.prefix_chain(fp, list(range(tokens)), block_tokens=16)


@pytest.mark.requirement("MKV-CAP-036")
def test_put_chain_blocks_are_found_by_prefix_invalidation(file_transport: FileTransport) -> None:
    fp, chain = _chain()
    assert all(r.ok for r in file_transport.put_chain(fp, chain, [b"p" * 4096] * 4))
    assert file_transport.invalidate_prefix(chain[1]) == 3  # chain[1] and the two chained after it
    assert file_transport.exists(chain) == [True, False, False, False]


@pytest.mark.requirement("MKV-CAP-036")
def test_put_chain_blocks_are_found_by_model_invalidation(file_transport: FileTransport) -> None:
    fp, chain = _chain()
    file_transport.put_chain(fp, chain[:2], [b"a" * 4096] * 2)
    file_transport.put_chain(fp, chain, [b"b" * 4096] * 2, start=2)  # the rest of the chain, later
    assert [info.meta.parent if info else None for info in file_transport.stat(chain[2:])] == chain[1:3]
    assert file_transport.invalidate_model(fp) == 4


def test_put_chain_refuses_payloads_that_do_not_match_the_keys(file_transport: FileTransport) -> None:
    fp, chain = _chain()
    with pytest.raises(MemkvError) as caught:
        file_transport.put_chain(fp, chain, [b"x"] * 4, start=1)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT


def test_the_readme_example_reports_a_miss_then_a_hit(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    example = re.search(r"```python\n(import numpy as np\nimport memkv\n.*?)```", text, re.S)
    assert example is not None, "README.md lost its Python example"
    code = example.group(1).replace("/tmp/memkv-store", str(tmp_path / "store"))
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
            for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr + runs[1].stderr
    assert runs[0].stdout == "hit: reloaded 0 of 4 blocks, stored 4\n"
    assert runs[1].stdout == "hit: reloaded 4 of 4 blocks, stored 0\n"
    with memkv.connect(f"file://{tmp_path}/store", namespace="team-a") as store:
        fp = memkv.model_fingerprint("meta-llama/Llama-3.1-8B", dtype="bf16", tp_size=1)
        assert store.invalidate_model(fp) == 4
