"""The engine's rule for a request's times: the core's (memkv/sessions.py), which the cluster client
and the server also apply before a session is looked at."""

from __future__ import annotations

from ..sessions import MAX_TTL_S, check_fork, check_ttl

__all__ = ["MAX_TTL_S", "check_fork", "check_ttl"]
