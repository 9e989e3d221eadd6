"""Human-readable sizes: "16MiB", "4GiB", "1.5GB", "4096"."""

from __future__ import annotations

import re

from .errors import InvalidArgument

_FACTORS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
            "gb": 1000**3, "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2,
            "gib": 1024**3, "tib": 1024**4}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    if isinstance(text, int):
        return text
    match = _PATTERN.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _FACTORS:
        raise InvalidArgument(f"cannot read size {text!r}; use e.g. 4096, 16MiB, 4GiB")
    return int(float(match.group(1)) * _FACTORS[unit])


def format_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
