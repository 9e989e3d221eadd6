"""Log set-up of `memkv serve`: level, text or JSON lines, and the NIXL/UCX libraries' own logs."""

from __future__ import annotations

import logging
import os
import sys

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# NIXL reads NIXL_LOG_LEVEL (its Python logger and its C++ core) and UCX reads UCX_LOG_LEVEL when
# they load, so these are set before the first memkv+nixl client arrives; a value the operator set wins.
_LIBRARY_LEVELS = {"NIXL_LOG_LEVEL": "WARN", "UCX_LOG_LEVEL": "warn"}


def configure_logging(level: str = "INFO", log_format: str = "text", quiet: bool = False) -> None:
    effective = logging.WARNING if quiet else getattr(logging, level.upper())
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           rename_fields={"asctime": "time", "levelname": "level",
                                                          "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(effective)
    if effective > logging.INFO:
        for name, value in _LIBRARY_LEVELS.items():
            os.environ.setdefault(name, value)
        logging.getLogger("nixl").setLevel(effective)  # already imported: its own handler ignores the root level
