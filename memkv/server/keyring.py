"""Namespaces, API keys and roles (spec/wire.md "Authentication", MKV-NS-005..008).

A keys file (YAML, or TOML by extension) maps each namespace to its keys:

    namespaces:
      team-a:
        - {id: a-writer, secret: "<64 hex chars>", role: write}
        - {id: a-admin, secret: "base64:<...>", role: admin}
    operators:                      # optional: global admin of the admin API (MKV-ADM-009)
      - {id: ops, secret: "<64 hex chars>"}
    quotas:                         # optional, per namespace, every field optional (MKV-NS-010)
      team-a: {bytes: 64GiB, pinned_bytes: 8GiB, sessions: 1000, leases: 10000}

Key ids are unique across the file and match KEY_ID_RE (MKV-SEC-002). Secrets are at least 16
bytes (32 recommended), written as hex digits or as `base64:...` with padding (MKV-SEC-003). A
keys file readable by other users is refused.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import os
import re
import stat
import tomllib
from collections.abc import Iterable
from typing import Any

import yaml

from ..credentials import KEY_ID_RE, parse_credential, parse_secret
from ..errors import InvalidArgument
from ..namespaces import check_namespace
from ..store.quotas import Quota, parse_quotas
from ..wire.opcodes import Role

log = logging.getLogger("memkv.server")


@dataclasses.dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    namespace: str
    secret: bytes = dataclasses.field(repr=False)
    role: Role
    operator: bool = False  # an operator administers every namespace on the admin API, nothing on the wire

    def administers(self, namespace: str) -> bool:
        return self.operator or (self.namespace == namespace and self.role >= Role.ADMIN)

    def grants(self, role: Role) -> bool:
        return self.role >= role


MAX_KEYS_FILE = 4 * 1024 * 1024


class KeyRing:
    """The configured namespaces and their keys; lookups are by key id."""

    def __init__(self, keys: Iterable[ApiKey] = (), namespaces: Iterable[str] = (),
                 operators: Iterable[ApiKey] = (), quotas: dict[str, Quota] | None = None) -> None:
        self.by_id: dict[str, ApiKey] = {}
        self.quotas = dict(quotas or {})
        self.operators: dict[str, ApiKey] = {}
        self.namespaces: set[str] = {check_namespace(ns) for ns in namespaces}
        for key in keys:
            if key.key_id in self.by_id:
                raise InvalidArgument(f"key id {key.key_id!r} appears twice")
            self.by_id[key.key_id] = key
            self.namespaces.add(key.namespace)
        for key in operators:
            if key.key_id in self.by_id or key.key_id in self.operators:
                raise InvalidArgument(f"key id {key.key_id!r} appears twice")
            self.operators[key.key_id] = key

    def get(self, key_id: str) -> ApiKey | None:
        """A namespace key (operators grant nothing on the wire, MKV-ADM-009)."""
        return self.by_id.get(key_id)

    def check_bearer(self, token: str) -> ApiKey | None:
        """The key a `<key id>:<secret>` token names, when the secret matches; else None."""
        try:
            key_id, secret = parse_credential(token)
        except InvalidArgument:
            return None
        key = self.by_id.get(key_id) or self.operators.get(key_id)
        if key is None or not hmac.compare_digest(key.secret, secret):
            return None
        return key

    @classmethod
    def from_mapping(cls, data: Any) -> KeyRing:
        if not isinstance(data, dict) or not isinstance(data.get("namespaces"), dict):
            raise InvalidArgument("a keys file holds a 'namespaces' mapping: namespace -> list of keys")
        keys: list[ApiKey] = []
        for namespace, entries in data["namespaces"].items():
            check_namespace(str(namespace))
            for entry in entries or []:
                if not isinstance(entry, dict) or not {"id", "secret", "role"} <= set(entry):
                    raise InvalidArgument(f"each key of namespace {namespace} needs id, secret and role")
                if not KEY_ID_RE.fullmatch(str(entry["id"])):
                    raise InvalidArgument(f"key id {entry['id']!r} must match {KEY_ID_RE.pattern}")
                try:
                    role = Role.parse(str(entry["role"]))
                except ValueError as exc:
                    raise InvalidArgument(str(exc)) from None
                try:
                    secret = parse_secret(str(entry["secret"]))
                except InvalidArgument as exc:
                    raise InvalidArgument(f"key {entry['id']!r} of namespace {namespace}: {exc.message}") from None
                keys.append(ApiKey(str(entry["id"]), str(namespace), secret, role))
        quotas = parse_quotas(data.get("quotas"))
        unknown = sorted(set(quotas) - set(map(str, data["namespaces"])))
        if unknown:
            raise InvalidArgument(f"quotas name namespaces the keys file does not have: {unknown}")
        return cls(keys, [str(ns) for ns in data["namespaces"]], _operators(data.get("operators")), quotas)

    @classmethod
    def load(cls, path: str) -> KeyRing:
        with open(path, "rb") as handle:  # check the file actually read, not a path that may change
            mode = os.fstat(handle.fileno()).st_mode
            if mode & (stat.S_IROTH | stat.S_IWOTH):
                raise InvalidArgument(f"keys file {path} is readable or writable by every user; chmod 600 it")
            if mode & stat.S_IWGRP:
                raise InvalidArgument(f"keys file {path} is writable by its group; chmod 600 it")
            if mode & stat.S_IRGRP:
                log.warning("keys file %s is readable by its group; chmod 600 is recommended", path)
            raw = handle.read(MAX_KEYS_FILE + 1)
        if len(raw) > MAX_KEYS_FILE:
            raise InvalidArgument(f"keys file {path} is larger than {MAX_KEYS_FILE} bytes")
        try:
            data = tomllib.loads(raw.decode("utf-8")) if path.endswith(".toml") else yaml.safe_load(raw)
        except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"cannot read keys file {path}: {_where(exc)}") from None
        try:
            return cls.from_mapping(data)
        except InvalidArgument as exc:
            raise InvalidArgument(f"keys file {path}: {exc.message}") from None


def _where(exc: Exception) -> str:
    """Where a keys file fails to parse, without quoting it: the quote could hold a secret (MKV-SEC-052)."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 at byte {exc.start}"
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}"
    at = re.search(r"\(at line \d+, column \d+\)|\(at end of document\)", str(exc))
    return f"TOML syntax error {at.group(0)[1:-1] if at else '(position unknown)'}"


def _operators(entries: Any) -> list[ApiKey]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise InvalidArgument("operators is a list of {id, secret}")
    operators = []
    for entry in entries:
        if not isinstance(entry, dict) or not {"id", "secret"} <= set(entry):
            raise InvalidArgument("each operator needs id and secret")
        if not KEY_ID_RE.fullmatch(str(entry["id"])):
            raise InvalidArgument(f"key id {entry['id']!r} must match {KEY_ID_RE.pattern}")
        operators.append(ApiKey(str(entry["id"]), "", parse_secret(str(entry["secret"])), Role.ADMIN, operator=True))
    return operators
