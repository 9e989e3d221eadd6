"""The spec's closed list of error codes (spec section "Errors", MKV-ERR-*) as typed exceptions.

Codes are stable integers: they travel on the wire and in reports. Never renumber one.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    OK = 0
    NOT_FOUND = 1
    INVALID_KEY = 2
    INVALID_ARGUMENT = 3
    BLOCK_TOO_LARGE = 4
    CHECKSUM_MISMATCH = 5
    CAPACITY_EXCEEDED = 6
    KEY_CONFLICT = 7
    UNKNOWN_SESSION = 8
    INVALID_SESSION_STATE = 9
    SESSION_EXPIRED = 10
    UNKNOWN_LEASE = 11
    NAMESPACE_NOT_FOUND = 12
    UNAUTHENTICATED = 13
    PERMISSION_DENIED = 14
    UNSUPPORTED_VERSION = 15
    STORE_LOCKED = 16
    BUFFER_TOO_SMALL = 17
    LIMIT_EXCEEDED = 18
    PROTOCOL_ERROR = 19
    TIMEOUT = 20
    UNAVAILABLE = 21
    CORRUPTED = 22
    UNSUPPORTED = 23
    INTERNAL = 24


class MemkvError(Exception):
    """Base of every error memkv raises; `code` is the spec's error code."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code.name)
        self.message = message or self.code.name

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class NotFound(MemkvError):
    """The block, key or object does not exist in this namespace."""

    code = ErrorCode.NOT_FOUND


class InvalidKey(MemkvError):
    """A key is not exactly KEY_SIZE bytes."""

    code = ErrorCode.INVALID_KEY


class InvalidArgument(MemkvError):
    """An argument is malformed or out of its documented range."""

    code = ErrorCode.INVALID_ARGUMENT


class BlockTooLarge(MemkvError):
    """A payload is larger than the target's maximum block size."""

    code = ErrorCode.BLOCK_TOO_LARGE


class ChecksumMismatch(MemkvError):
    """A payload does not match the checksum its writer declared."""

    code = ErrorCode.CHECKSUM_MISMATCH


class CapacityExceeded(MemkvError):
    """The store cannot fit the block without evicting pinned or leased data."""

    code = ErrorCode.CAPACITY_EXCEEDED


class KeyConflict(MemkvError):
    """A put names an existing key with a different payload (blocks are immutable)."""

    code = ErrorCode.KEY_CONFLICT


class UnknownSession(MemkvError):
    """No session with this id exists in this namespace."""

    code = ErrorCode.UNKNOWN_SESSION


class InvalidSessionState(MemkvError):
    """The operation is not allowed in the session's current state."""

    code = ErrorCode.INVALID_SESSION_STATE


class SessionExpired(MemkvError):
    """The session's TTL ran out."""

    code = ErrorCode.SESSION_EXPIRED


class UnknownLease(MemkvError):
    """The lease does not exist or has expired."""

    code = ErrorCode.UNKNOWN_LEASE


class NamespaceNotFound(MemkvError):
    """The namespace is not configured on this target."""

    code = ErrorCode.NAMESPACE_NOT_FOUND


class Unauthenticated(MemkvError):
    """Credentials are missing, wrong, or a frame's signature does not verify."""

    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(MemkvError):
    """The credentials do not grant this operation on this namespace."""

    code = ErrorCode.PERMISSION_DENIED


class UnsupportedVersion(MemkvError):
    """An on-disk or on-wire header carries a newer version than this build reads."""

    code = ErrorCode.UNSUPPORTED_VERSION


class StoreLocked(MemkvError):
    """Another process holds the store."""

    code = ErrorCode.STORE_LOCKED


class BufferTooSmall(MemkvError):
    """A caller-provided buffer is smaller than the block."""

    code = ErrorCode.BUFFER_TOO_SMALL


class LimitExceeded(MemkvError):
    """A batch, metadata or frame exceeds a declared limit."""

    code = ErrorCode.LIMIT_EXCEEDED


class ProtocolError(MemkvError):
    """A frame is malformed."""

    code = ErrorCode.PROTOCOL_ERROR


class Timeout(MemkvError):
    """The operation did not complete in time; its outcome is unknown."""

    code = ErrorCode.TIMEOUT


class Unavailable(MemkvError):
    """The target cannot serve requests now (shutting down, device offline)."""

    code = ErrorCode.UNAVAILABLE


class Corrupted(MemkvError):
    """Stored data failed verification; the block was removed and is reported as lost."""

    code = ErrorCode.CORRUPTED


class Unsupported(MemkvError):
    """The target does not implement this operation (it does not claim the profile)."""

    code = ErrorCode.UNSUPPORTED


class Internal(MemkvError):
    """An unexpected failure inside the target."""

    code = ErrorCode.INTERNAL


_BY_CODE: dict[ErrorCode, type[MemkvError]] = {
    cls.code: cls for cls in MemkvError.__subclasses__()
}


def error_for(code: ErrorCode | int, message: str = "") -> MemkvError:
    """The typed exception for `code` (used by per-item results and the wire decoder).

    A number outside the closed list (a newer peer) is reported as INTERNAL (MKV-ERR-001).
    """
    try:
        known = ErrorCode(code)
    except ValueError:
        return Internal(f"unknown error code {int(code)}: {message}")
    if known is ErrorCode.OK:
        raise ValueError("ErrorCode.OK is not an error")
    return _BY_CODE[known](message)
