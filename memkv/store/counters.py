"""What the engine counts for stats() and metrics."""

from __future__ import annotations

import collections
import dataclasses


@dataclasses.dataclass(slots=True)
class EngineCounters:
    puts: int = 0
    gets: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    invalidations: int = 0
    bytes_written: int = 0
    bytes_read: int = 0
    errors: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
