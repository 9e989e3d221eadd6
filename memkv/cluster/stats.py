"""The stats of a cluster: every numeric counter summed over the shards that answered (MKV-CLU-015)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def merge_stats(answers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for answer in answers:
        for name, value in answer.items():
            merged[name] = _merge(merged[name], value) if name in merged else value
    return merged


def _merge(left: Any, right: Any) -> Any:
    if isinstance(left, bool) or isinstance(right, bool):
        return left
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left + right
    if isinstance(left, dict) and isinstance(right, dict):
        out = dict(left)
        for name, value in right.items():
            out[name] = _merge(out[name], value) if name in out else value
        return out
    return left  # text (namespace, version): the same on every shard


__all__ = ["merge_stats"]
