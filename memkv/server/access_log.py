"""`memkv serve --access-log PATH`: one trace line per lookup, for `memkv plan` (MKV-CAP-009).

Each line is the Mooncake trace format that `memkv plan --trace` reads: `timestamp` (ms since
the log was opened), `input_length` (the looked-up chain's blocks x 512 tokens, the trace's block
size: the server does not know token counts), `output_length` 0, and `hash_ids`, one per key.
Keys and namespaces never appear: a key's id is a keyed BLAKE2b hash of (namespace, key) under a
random secret held only in memory, so ids match within one server run and cannot be reversed;
the namespace appears as such a hash too. No payload is ever logged. The file is rotated at
`max_bytes` with one older file kept (PATH.1), so the log never takes more than twice that.
"""

from __future__ import annotations

import hashlib
import json
import logging
import logging.handlers
import os
import time
from collections.abc import Sequence

from ..plan.workload import TRACE_BLOCK_TOKENS

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
MAX_HASH_ID = 2**63 - 1


class AccessLog:
    def __init__(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = 1) -> None:
        self._secret = os.urandom(32)
        self._started = time.monotonic()
        self._handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                                             encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger = logging.Logger(f"memkv.access.{id(self)}")
        self._logger.propagate = False
        self._logger.addHandler(self._handler)

    def _hash(self, *parts: bytes) -> bytes:
        h = hashlib.blake2b(key=self._secret, digest_size=8)
        for part in parts:
            h.update(len(part).to_bytes(2, "little"))
            h.update(part)
        return h.digest()

    def lookup(self, namespace: str, keys: Sequence[bytes]) -> None:
        ns = namespace.encode("utf-8")
        ids = [int.from_bytes(self._hash(ns, key), "little") & MAX_HASH_ID for key in keys]
        record = {"timestamp": int((time.monotonic() - self._started) * 1000),
                  "input_length": len(ids) * TRACE_BLOCK_TOKENS, "output_length": 0, "hash_ids": ids,
                  "namespace": self._hash(b"namespace", ns).hex()}
        self._logger.info(json.dumps(record, separators=(",", ":")))

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
        self._handler.close()


__all__ = ["DEFAULT_MAX_BYTES", "AccessLog"]
