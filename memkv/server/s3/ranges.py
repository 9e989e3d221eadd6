"""The Range header of GetObject: one byte range, or none (MKV-S3-041, RFC 9110 section 14)."""

from __future__ import annotations

import re

from .errors import S3Error

_RANGE_RE = re.compile(r"bytes=(?:(\d{1,20})-(\d{0,20})|-(\d{1,20}))")


def byte_range(header: str | None, length: int) -> tuple[int, int] | None:
    """(first, last) inclusive of the one range `header` asks for, None for the whole object.

    A header that is not a single byte range is ignored (None); one that cannot be satisfied
    raises 416 InvalidRange.
    """
    if header is None:
        return None
    match = _RANGE_RE.fullmatch(header.strip())
    if match is None:
        return None
    first_text, last_text, suffix_text = match.groups()
    if suffix_text is not None:
        suffix = int(suffix_text)
        if suffix == 0:
            raise _unsatisfiable(length)
        return max(0, length - suffix), length - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None
    if first >= length:
        raise _unsatisfiable(length)
    return first, min(int(last_text), length - 1) if last_text else length - 1


def _unsatisfiable(length: int) -> S3Error:
    return S3Error(416, "InvalidRange", "the requested range is not satisfiable",
                   (("Content-Range", f"bytes */{length}"),))
