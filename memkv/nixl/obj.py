"""A NIXL agent with the OBJ backend pointed at an S3 endpoint: what Dynamo KVBM's G4 tier does.

KVBM moves blocks between pinned host memory (DRAM) and object storage with NIXL's OBJ backend:
each object is registered with its device id set to the block's sequence hash, which the
backend sends as the object name (the decimal number), and a READ may start at an offset (a
ranged GET). This class does the same through the NIXL Python API, for tests and benchmarks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ..errors import InvalidArgument, Unavailable
from ..memory_kind import MemoryKind
from .agent import OBJ, NixlAgent, Operation


class ObjAgent:
    """DRAM <-> OBJ transfers against one bucket of an S3 endpoint."""

    def __init__(self, name: str, endpoint: str, bucket: str, access_key: str, secret_key: str,
                 req_checksum: str = "supported", timeout_s: float = 60.0) -> None:
        scheme = endpoint.partition("://")[0] or "http"
        params = {"bucket": bucket, "endpoint_override": endpoint, "scheme": scheme, "region": "us-east-1",
                  "access_key": access_key, "secret_key": secret_key, "use_virtual_addressing": "false",
                  "req_checksum": req_checksum}
        self.name = name
        self.timeout_s = timeout_s
        self.agent = NixlAgent(name, backend=OBJ, params=params)

    def write(self, blocks: Sequence[tuple[np.ndarray, int]]) -> None:
        """Store each buffer as the object named by its sequence hash (one PutObject each)."""
        self._transfer("WRITE", [(buf, sequence_hash, 0) for buf, sequence_hash in blocks])

    def read(self, blocks: Sequence[tuple[np.ndarray, int, int]]) -> None:
        """Fill each buffer from its object, starting at the offset (a ranged GetObject each)."""
        self._transfer("READ", blocks)

    def exists(self, sequence_hashes: Sequence[int]) -> list[bool]:
        """Whether each object is stored (HeadObject, through NIXL's query_memory)."""
        return self.agent.query([(0, 0, h, str(h)) for h in sequence_hashes], OBJ)

    def _transfer(self, op: Operation, blocks: Sequence[tuple[np.ndarray, int, int]]) -> None:
        local = [(buf.ctypes.data, buf.nbytes, 0) for buf, _, _ in blocks]
        remote = [(offset, buf.nbytes, sequence_hash) for buf, sequence_hash, offset in blocks]
        dram = self.agent.register_regions([(*desc, "") for desc in local], MemoryKind.DRAM)
        try:
            objects = self.agent.register_regions([(0, offset + buf.nbytes, h, "") for buf, h, offset in blocks], OBJ)
            try:
                try:
                    transfer = self.agent.post(op, local, MemoryKind.DRAM, remote, OBJ, self.name)
                except InvalidArgument as exc:  # the OBJ backend refuses a request the endpoint refused
                    raise Unavailable(f"NIXL OBJ {op} failed: {exc.message}") from None
                try:
                    self.agent.wait(transfer, time.monotonic() + self.timeout_s, pause_s=0.0005)
                finally:
                    self.agent.release(transfer)
            finally:
                self.agent.deregister(objects)
        finally:
            self.agent.deregister(dram)
