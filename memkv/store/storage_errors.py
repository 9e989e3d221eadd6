"""Storage failures (device OSError, SQLite errors) as spec errors, and which of them stop writes.

A full disk is transient: the request fails with UNAVAILABLE and nothing changes. A failed
fdatasync or an I/O error inside the index leaves durability unknown (a retried fsync may report
success for pages the kernel already dropped), so the engine stops taking writes (MKV-DUR-009).
"""

from __future__ import annotations

import errno
import sqlite3

from ..errors import Unavailable

# SQLite primary result codes (sqlite3.h) after which the index's durability is unknown.
_SQLITE_FATAL = {10: "SQLITE_IOERR", 11: "SQLITE_CORRUPT", 26: "SQLITE_NOTADB"}
_OS_TRANSIENT = {errno.ENOSPC, errno.EDQUOT}


def describe(exc: BaseException) -> str:
    """One line naming the failure, never more than its class, code and message."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
        return f"index error {name}: {exc}"
    if isinstance(exc, OSError):
        return f"device error {errno.errorcode.get(exc.errno or 0, exc.errno)}: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def is_fatal(exc: BaseException) -> bool:
    """Whether durability is unknown after `exc`, so the store must stop taking writes."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and (code & 0xFF) in _SQLITE_FATAL
    return False


def unavailable(exc: BaseException, doing: str) -> Unavailable:
    return Unavailable(f"{doing} failed, nothing was changed: {describe(exc)}")

