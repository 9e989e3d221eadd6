"""Unit tests of memkv.keys: key size (MKV-KEY-001) and process independence (MKV-KEY-003)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from memkv import keys as K
from memkv.errors import ErrorCode, InvalidArgument, InvalidKey


@pytest.mark.requirement("MKV-KEY-001")
@pytest.mark.parametrize("size", [0, 1, 15, 17, 32])
def test_key_of_wrong_size_is_invalid_key(size: int) -> None:
    with pytest.raises(InvalidKey) as info:
        K.check_key(bytes(size))
    assert info.value.code is ErrorCode.INVALID_KEY


@pytest.mark.requirement("MKV-KEY-001")
@pytest.mark.parametrize("value", ["0123456789abcdef", 16, None, [0] * 16, 1.5])
def test_key_that_is_not_bytes_is_invalid_key(value: object) -> None:
    with pytest.raises(InvalidKey) as info:
        K.check_key(value)
    assert info.value.code is ErrorCode.INVALID_KEY


@pytest.mark.requirement("MKV-KEY-001")
@pytest.mark.parametrize("kind", [bytes, bytearray, lambda b: memoryview(bytes(b))])
def test_sixteen_byte_buffers_are_keys(kind: object) -> None:
    raw = bytes(range(16))
    assert K.check_key(kind(raw)) == raw  # type: ignore[operator]


@pytest.mark.requirement("MKV-KEY-001")
def test_parent_of_wrong_size_is_invalid_key() -> None:
    with pytest.raises(InvalidKey):
        K.block_key(K.NO_FINGERPRINT, bytes(15), [1])


@pytest.mark.requirement("MKV-KEY-002", "MKV-KEY-007")
def test_chain_properties() -> None:
    fp = K.model_fingerprint("m")
    tokens = list(range(64))
    chain = K.prefix_chain(fp, tokens, 16)
    assert len(chain) == 4 and len(set(chain)) == 4
    assert all(len(k) == K.KEY_SIZE for k in chain)
    # A chain is a prefix of the chain of any longer sequence, and depends on every earlier token.
    assert K.prefix_chain(fp, [*tokens, 99, 100], 16) == chain
    changed = K.prefix_chain(fp, [1, *tokens[1:]], 16)
    assert all(a != b for a, b in zip(chain, changed, strict=True))
    # Another fingerprint gives other keys for the same tokens.
    assert set(K.prefix_chain(K.model_fingerprint("other"), tokens, 16)).isdisjoint(chain)
    with pytest.raises(InvalidArgument):
        K.prefix_chain(fp, tokens, 0)


@pytest.mark.requirement("MKV-KEY-004")
def test_fingerprint_attribute_order_does_not_matter() -> None:
    a = K.model_fingerprint("m", dtype="bf16", tp_size=2, tp_rank=1)
    b = K.model_fingerprint("m", tp_rank=1, tp_size=2, dtype="bf16")
    assert a == b and len(a) == K.FINGERPRINT_SIZE
    assert a != K.model_fingerprint("m", dtype="bf16", tp_size=2, tp_rank=0)


_CHILD = """
import json, sys
from memkv import keys as K
fp = K.model_fingerprint("meta-llama/Llama-3.1-8B-Instruct", dtype="bfloat16", tp_size=1, tp_rank=0)
out = {
    "hash_of_str": hash("memkv"),
    "fingerprint": fp.hex(),
    "chain": [k.hex() for k in K.prefix_chain(fp, list(range(1000)), 16)],
    "seq": K.key_from_sequence_hash(fp, 2**64 - 1).hex(),
    "ext": K.key_from_engine_hash(fp, b"engine-hash").hex(),
}
json.dump(out, sys.stdout)
"""


def _derive_in_child(hash_seed: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.requirement("MKV-KEY-003")
def test_keys_do_not_depend_on_the_process_hash_seed() -> None:
    first, second = _derive_in_child("1"), _derive_in_child("4242")
    # The two processes really had different hash seeds ...
    assert first.pop("hash_of_str") != second.pop("hash_of_str")
    # ... and derived the same keys, which are also this process's keys.
    assert first == second
    fp = K.model_fingerprint("meta-llama/Llama-3.1-8B-Instruct", dtype="bfloat16", tp_size=1, tp_rank=0)
    assert first["chain"] == [k.hex() for k in K.prefix_chain(fp, list(range(1000)), 16)]
