"""A NIXL agent with the OBJ backend pointed at an S3 endpoint: what Dynamo KVBM's G4 tier does.

KVBM moves blocks between pinned host memory (DRAM) and object storage with NIXL's OBJ backend:
each object is registered with its device id set to the block's sequence hash, which the
backend sends as the object name (the decimal number), and a READ may start at an offset (a
ranged GET). This class does the same through the NIXL Python API, for tests and benchmarks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...errors import MemkvError, Timeout, Unavailable, Unsupported
from ...nixl.support import describe_error, load_api

OBJ = "OBJ"


class ObjAgent:
    """DRAM <-> OBJ transfers against one bucket of an S3 endpoint."""

    def __init__(self, name: str, endpoint: str, bucket: str, access_key: str, secret_key: str,
                 req_checksum: str = "supported", timeout_s: float = 60.0) -> None:
        api = load_api()
        self.name = name
        self.timeout_s = timeout_s
        self.agent = api.nixl_agent(name, api.nixl_agent_config(backends=[]))
        scheme = endpoint.partition("://")[0] or "http"
        params = {"bucket": bucket, "endpoint_override": endpoint, "scheme": scheme, "region": "us-east-1",
                  "access_key": access_key, "secret_key": secret_key, "use_virtual_addressing": "false",
                  "req_checksum": req_checksum}
        if OBJ not in self.agent.get_plugin_list():
            raise Unsupported("this NIXL build has no OBJ plugin")
        self.agent.create_backend(OBJ, params)

    def write(self, blocks: Sequence[tuple[np.ndarray, int]]) -> None:
        """Store each buffer as the object named by its sequence hash (one PutObject each)."""
        self._transfer("WRITE", [(buf, sequence_hash, 0) for buf, sequence_hash in blocks])

    def read(self, blocks: Sequence[tuple[np.ndarray, int, int]]) -> None:
        """Fill each buffer from its object, starting at the offset (a ranged GetObject each)."""
        self._transfer("READ", blocks)

    def exists(self, sequence_hashes: Sequence[int]) -> list[bool]:
        """Whether each object is stored (HeadObject, through NIXL's query_memory)."""
        answers = self.agent.query_memory([(0, 0, h, str(h)) for h in sequence_hashes], OBJ, OBJ)
        return [answer is not None for answer in answers]

    def _wait(self, handle: Any, state: str, op: str, count: int) -> str:
        deadline = time.monotonic() + self.timeout_s
        while state not in ("DONE", "ERR"):
            if time.monotonic() > deadline:
                raise Timeout(f"NIXL OBJ {op} of {count} objects took over {self.timeout_s} s")
            time.sleep(0.0005)
            state = self.agent.check_xfer_state(handle)
        return state

    def _transfer(self, op: str, blocks: Sequence[tuple[np.ndarray, int, int]]) -> None:
        local = [(buf.ctypes.data, buf.nbytes, 0) for buf, _, _ in blocks]
        remote = [(offset, buf.nbytes, sequence_hash) for buf, sequence_hash, offset in blocks]
        dram = self.agent.register_memory([(*desc, "") for desc in local], "DRAM")
        objects = self.agent.register_memory([(0, offset + buf.nbytes, h, "") for buf, h, offset in blocks], OBJ)
        handle: Any = None
        try:
            handle = self.agent.initialize_xfer(op, self.agent.get_xfer_descs(local, "DRAM"),
                                                self.agent.get_xfer_descs(remote, OBJ), self.name)
            state = self._wait(handle, self.agent.transfer(handle), op, len(blocks))
        except MemkvError:
            raise
        except Exception as exc:  # NIXL's binding errors: a refused request is NIXL_ERR_BACKEND
            raise Unavailable(f"NIXL OBJ {op} failed: {describe_error(exc)}") from None
        else:
            if state == "ERR":
                raise Unavailable(f"NIXL OBJ {op} failed (the S3 endpoint refused or could not be reached)")
        finally:
            if handle is not None:
                self.agent.release_xfer_handle(handle)
            self.agent.deregister_memory(objects)
            self.agent.deregister_memory(dram)
