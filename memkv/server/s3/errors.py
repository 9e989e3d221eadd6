"""S3 error answers: the XML body and the status of memkv's error codes (MKV-S3-043)."""

from __future__ import annotations

from xml.sax.saxutils import escape

from ...errors import ErrorCode, MemkvError

_BY_CODE: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.NOT_FOUND: (404, "NoSuchKey"),
    ErrorCode.INVALID_ARGUMENT: (400, "InvalidArgument"),
    ErrorCode.INVALID_KEY: (400, "InvalidArgument"),
    ErrorCode.BLOCK_TOO_LARGE: (400, "EntityTooLarge"),
    ErrorCode.CHECKSUM_MISMATCH: (400, "BadDigest"),
    ErrorCode.KEY_CONFLICT: (409, "OperationAborted"),
    ErrorCode.CAPACITY_EXCEEDED: (507, "InsufficientStorage"),
    ErrorCode.LIMIT_EXCEEDED: (507, "InsufficientStorage"),
    ErrorCode.UNAVAILABLE: (503, "ServiceUnavailable"),
    ErrorCode.TIMEOUT: (503, "ServiceUnavailable"),
}


class S3Error(Exception):
    """An answer with an S3 error code; `headers` go out with it (Content-Range of a 416)."""

    def __init__(self, status: int, code: str, message: str,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def from_memkv(exc: MemkvError) -> S3Error:
    status, code = _BY_CODE.get(exc.code, (500, "InternalError"))
    return S3Error(status, code, exc.message)


def error_body(error: S3Error, resource: str, request_id: str) -> bytes:
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            f"<Error><Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message>"
            f"<Resource>{escape(resource)}</Resource><RequestId>{escape(request_id)}</RequestId></Error>"
            ).encode()
