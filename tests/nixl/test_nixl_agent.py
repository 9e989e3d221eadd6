"""memkv.nixl.agent: the typed NIXL agent moves bytes and reports every NIXL failure as a spec error."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest

from memkv.buffers import address_of, aligned_buffer
from memkv.errors import InvalidArgument
from memkv.memory_kind import MemoryKind
from memkv.nixl.agent import NixlAgent, availability
from memkv.nixl.support import Pump, metadata_agent_name

NIXL_OK, NIXL_REASON = availability()
pytestmark = pytest.mark.skipif(not NIXL_OK, reason=f"NIXL unavailable: {NIXL_REASON}")
DRAM = MemoryKind.DRAM


@pytest.fixture(scope="module")
def agents() -> Iterator[tuple[NixlAgent, NixlAgent]]:
    """An initiator and a target in this process, over UCX/TCP (set before either exists)."""
    old = os.environ.get("UCX_TLS")
    os.environ["UCX_TLS"] = "tcp"
    try:
        yield NixlAgent(f"test-initiator-{uuid.uuid4().hex[:8]}"), NixlAgent(f"test-target-{uuid.uuid4().hex[:8]}")
    finally:
        if old is None:
            os.environ.pop("UCX_TLS", None)
        else:
            os.environ["UCX_TLS"] = old


def test_write_with_notification_between_two_agents(agents: tuple[NixlAgent, NixlAgent]) -> None:
    initiator, target = agents
    source, dest = aligned_buffer(1 << 20), aligned_buffer(1 << 20)
    source[:] = os.urandom(1 << 20)
    mine, theirs = initiator.register(address_of(source), len(source)), target.register(address_of(dest), len(dest))
    metadata = target.metadata()
    assert metadata_agent_name(metadata) == target.name
    assert initiator.add_peer(metadata) == target.name
    arrived: dict[str, list[bytes]] = {}
    pump = Pump(target, lambda notifs: [arrived.setdefault(k, []).extend(v) for k, v in notifs.items()])
    pump.enter()
    try:
        posted = initiator.post("WRITE", [(address_of(source), len(source), 0)], DRAM,
                                [(address_of(dest), len(dest), 0)], DRAM, target.name, b"done-1")
        initiator.wait(posted, time.monotonic() + 30)
        assert initiator.release(posted)
        deadline = time.monotonic() + 10
        while not arrived and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        pump.leave()
        pump.close()
    assert bytes(dest) == bytes(source)
    assert arrived == {initiator.name: [b"done-1"]}
    assert initiator.remove_peer(target.name)
    assert initiator.deregister(mine) and target.deregister(theirs)


def test_failures_are_spec_errors(agents: tuple[NixlAgent, NixlAgent]) -> None:
    initiator, _ = agents
    with pytest.raises(InvalidArgument, match="NIXL could not load the agent metadata"):
        initiator.add_peer(b"nixlSerDes|Agent garbage")
    local = aligned_buffer(4096)
    with pytest.raises(InvalidArgument, match="NIXL refused the READ"):  # a peer it never loaded
        initiator.post("READ", [(address_of(local), 4096, 0)], DRAM, [(4096, 4096, 0)], DRAM, "nobody")
    with pytest.raises(InvalidArgument, match="NIXL cannot register 4096 bytes at 0x0"):
        initiator.register(0, 4096, 0, MemoryKind.VRAM)  # no device memory at address 0
