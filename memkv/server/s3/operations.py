"""The five S3 operations over a storage engine (spec/s3.md, MKV-S3-002..003, 021..022, 033..042).

`plan` decides everything that does not need the body (operation, bucket, key, signature, role,
stated size), so a PutObject is refused before a byte of its body is read.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ...errors import ErrorCode, MemkvError, error_for
from ...transport import BlockInfo, ItemResult, PutItem
from ...wire.opcodes import Role
from ..keyring import KeyRing
from . import payload
from .errors import S3Error, from_memkv
from .names import is_bucket_name, object_key
from .ranges import byte_range
from .sigv4 import verify

if TYPE_CHECKING:
    from ...store.engine import StorageEngine
    from ..connection import BufferBudget

BUFFER_WAIT_S = 5.0
OBJECT_OPERATIONS = {"PUT": ("PutObject", Role.WRITE), "GET": ("GetObject", Role.READ),
                     "HEAD": ("HeadObject", Role.READ), "DELETE": ("DeleteObject", Role.WRITE)}


@dataclasses.dataclass(slots=True)
class Answer:
    status: int
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    body: bytes | bytearray | memoryview = b""
    held: int = 0  # buffer budget bytes to give back once the answer is sent


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    operation: str
    namespace: str
    key: bytes = b""
    body_size: int = 0  # PutObject: the payload bytes stated
    raw_limit: int = 0  # PutObject: the most body bytes accepted on the wire


def _raise_for(result: ItemResult) -> None:
    if not result.ok:
        raise from_memkv(error_for(result.status, result.message))


def etag(checksum: int) -> str:
    return f'"{checksum:016x}"'


class S3Operations:
    def __init__(self, engine: StorageEngine, keyring: KeyRing | None, budget: BufferBudget) -> None:
        self.engine = engine
        self.keyring = keyring
        self.budget = budget

    def plan(self, method: str, target: str, headers: Sequence[tuple[str, str]]) -> Plan:
        fields = dict(headers)
        path, _, query = target.partition("?")
        bucket, _, name = urllib.parse.unquote(path.lstrip("/")).partition("/")
        if not bucket:
            raise S3Error(400, "InvalidRequest", "requests are path-style: /bucket/object")
        if not is_bucket_name(bucket):
            raise S3Error(400, "InvalidBucketName", "a bucket name is a namespace name (spec MKV-NS-003)")
        operation, role = self._operation(method, name, query, fields)
        if self.keyring is not None:
            self._authorize(method, target, headers, bucket, role)
        if not name:
            return Plan(operation, bucket)
        try:
            key = object_key(name)
        except MemkvError as exc:
            raise from_memkv(exc) from None
        if operation != "PutObject":
            return Plan(operation, bucket, key)
        payload.check_payload_hash(fields, fields.get("content-encoding", ""))
        size, raw_limit = payload.stated_size(fields, self.engine.limits.max_block_size)
        return Plan(operation, bucket, key, size, raw_limit)

    @staticmethod
    def _operation(method: str, name: str, query: str, fields: Mapping[str, str]) -> tuple[str, Role]:
        known = OBJECT_OPERATIONS.get(method) if name else (("HeadBucket", Role.READ) if method == "HEAD" else None)
        if known is None or query or "x-amz-copy-source" in fields:
            what = f"{method} {'/bucket/object' if name else '/bucket'}{'?' + query[:64] if query else ''}"
            raise S3Error(501, "NotImplemented", f"{what} is not one of PutObject, GetObject, HeadObject, "
                                                 "DeleteObject, HeadBucket")
        return known

    def _authorize(self, method: str, target: str, headers: Sequence[tuple[str, str]], bucket: str,
                   role: Role) -> None:
        assert self.keyring is not None
        key = verify(method, target, headers, self.keyring)
        if bucket not in self.keyring.namespaces:
            raise S3Error(404, "NoSuchBucket", f"no namespace {bucket!r} in the keys file")
        if key.namespace != bucket or not key.grants(role):
            raise S3Error(403, "AccessDenied", f"key {key.key_id!r} may not {role.name.lower()} bucket {bucket!r}")

    # ---- operations --------------------------------------------------------------------------
    def put(self, plan: Plan, headers: Sequence[tuple[str, str]], body: bytes | bytearray) -> Answer:
        data = payload.decoded_payload(dict(headers), body, plan.body_size)
        [result] = self.engine.put(plan.namespace, [PutItem(plan.key, data)])
        _raise_for(result)
        return Answer(200, [("ETag", etag(self._info(plan).checksum))])

    def _info(self, plan: Plan) -> BlockInfo:
        [info] = self.engine.stat(plan.namespace, [plan.key])
        if info is None:
            raise S3Error(404, "NoSuchKey", "the object does not exist (never stored, deleted or evicted)")
        return info

    def head(self, plan: Plan) -> Answer:
        if plan.operation == "HeadBucket":
            return Answer(200)
        info = self._info(plan)
        return Answer(200, [("Content-Length", str(info.length)), *self._object_headers(info.checksum)])

    def get(self, plan: Plan, range_header: str | None) -> Answer:
        info = self._info(plan)
        span = byte_range(range_header, info.length)
        self.budget.acquire(info.length, BUFFER_WAIT_S)
        try:
            buffer = bytearray(info.length)
            [result] = self.engine.get_into(plan.namespace, [plan.key], [buffer])
            _raise_for(result)
        except BaseException:
            self.budget.release(info.length)
            raise
        if span is None:
            return Answer(200, self._object_headers(info.checksum), buffer, info.length)
        first, last = span
        headers = [("Content-Range", f"bytes {first}-{last}/{info.length}"), *self._object_headers(info.checksum)]
        return Answer(206, headers, memoryview(buffer)[first : last + 1], info.length)

    def delete(self, plan: Plan) -> Answer:
        [result] = self.engine.delete(plan.namespace, [plan.key])
        if result.status is not ErrorCode.NOT_FOUND:
            _raise_for(result)
        return Answer(204)

    @staticmethod
    def _object_headers(checksum: int) -> list[tuple[str, str]]:
        return [("ETag", etag(checksum)), ("Accept-Ranges", "bytes"), ("Content-Type", "application/octet-stream")]
