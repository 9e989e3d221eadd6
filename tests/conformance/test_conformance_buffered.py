"""The memkv server with a buffered device (page cache, as with its store on tmpfs) is CERTIFIED.

Its streamed puts receive straight into the mapped device and its gets send from the mapping, a data
path the O_DIRECT server (test_conformance_tcp.py) never takes. The checks ran just before the first
test as `...::test_x[buffered]` (memkv/conformance/per_backend.py: `memkv-serve` with MEMKV_DIRECT=0).
"""

from __future__ import annotations

import pytest
from helpers_certification import assert_certified

from memkv.conformance.per_backend import BACKENDS, Certification
from memkv.conformance.target import load_target
from memkv.transport import PutItem

BUFFERED_CLAIMS = ["admin", "core", "secure", "sessions", "shared", "wire"]


@pytest.mark.requirement("MKV-PRO-001")
@pytest.mark.memkv_backend("buffered")
def test_buffered_server_is_certified(memkv_certification: Certification) -> None:
    assert_certified(memkv_certification, "tcp", BUFFERED_CLAIMS)


def test_the_buffered_backend_serves_from_a_buffered_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the certification above is worth: the server it started really stored through the page cache."""
    backend = BACKENDS["buffered"]
    for name, value in backend.env.items():
        monkeypatch.setenv(name, value)
    target = load_target(backend.target)
    try:
        namespace = target.allocate_namespace()
        assert namespace is not None
        client = target.connect(namespace)
        try:
            key = bytes(range(16))
            data = bytes(range(256)) * 8192  # 2 MiB: a streamed put and get
            client.put([PutItem(key, data)])[0].raise_for_status()
            buf = bytearray(len(data))
            client.get_into([key], [buf])[0].raise_for_status()
            assert buf == data
            assert client.stats()["direct_io"] is False
        finally:
            client.close()
    finally:
        target.close()
