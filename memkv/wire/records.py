"""Typed argument records of the wire opcodes: one per opcode's request arguments, and answers.

A record's fields are that opcode's request arguments in spec/operations.yaml: the name, the
type (str = string, int = int, float = number, Hex16 = hex16, `| None` = `|null`) and whether
it is required (a field without a default). `check_schema` compares every record with the
schema, and runs when this module is first imported, so an argument added to the schema and not
here, or the reverse, fails at once instead of on the wire. Clients build records and `encode`
them; servers `decode` a frame's arguments into the record of its opcode (INVALID_ARGUMENT for a
missing or mistyped one, MKV-WIRE-006).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import types
import typing
from pathlib import Path
from typing import Any, NewType, TypeVar

import yaml

from ..errors import ProtocolError
from ..keys import NO_FINGERPRINT
from ..sessions import SessionInfo, SessionState
from ..transport import LookupResult
from .messages import MetaReader
from .opcodes import Opcode

Hex16 = NewType("Hex16", bytes)  # 16 bytes, spelt as 32 hexadecimal digits in the arguments
HEX16_SIZE = 16


class SchemaMismatch(RuntimeError):
    """The records of this module and spec/operations.yaml disagree."""


def _since_1_2(default: Any) -> Any:
    """An optional argument of minor 2, sent only when it differs from its default, so that a
    request that does not use it is the same bytes as in 1.1 (MKV-WIRE-055)."""
    return dataclasses.field(default=default, metadata={"omit_default": True})




@dataclasses.dataclass(frozen=True, slots=True)
class HelloArgs:
    namespace: str
    key_id: str | None
    client_nonce: Hex16
    timestamp_ms: int
    client: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class LookupArgs:
    lease_ms: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class ReleaseLeaseArgs:
    lease_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class SessionOpenArgs:
    ttl_s: float
    fingerprint: Hex16 = Hex16(NO_FINGERPRINT)
    session_id: str | None = _since_1_2(None)  # chosen by the client (MKV-WIRE-052)
    foreign: bool = _since_1_2(False)  # keys other shards store (MKV-WIRE-053)


@dataclasses.dataclass(frozen=True, slots=True)
class SessionArgs:
    """The one argument of SESSION_CLOSE/INFO and INVALIDATE_SESSION."""

    session_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class SessionAppendArgs:
    session_id: str
    foreign: bool = _since_1_2(False)  # MKV-WIRE-053


@dataclasses.dataclass(frozen=True, slots=True)
class SessionResumeArgs:
    session_id: str
    prefix_len: int | None = _since_1_2(None)  # the valid prefix the client found (MKV-WIRE-054)


@dataclasses.dataclass(frozen=True, slots=True)
class SessionSuspendArgs:
    session_id: str
    pause_ttl_s: float


@dataclasses.dataclass(frozen=True, slots=True)
class SessionForkArgs:
    session_id: str
    prefix_len: int | None = None
    ttl_s: float | None = None
    new_session_id: str | None = _since_1_2(None)  # MKV-WIRE-052


@dataclasses.dataclass(frozen=True, slots=True)
class ChildrenArgs:
    after: Hex16 | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ChildrenAnswer:
    """The page's cursor; the children are the answer's key items (MKV-WIRE-044)."""

    next: Hex16 | None


@dataclasses.dataclass(frozen=True, slots=True)
class InvalidatePrefixArgs:
    key: Hex16


@dataclasses.dataclass(frozen=True, slots=True)
class InvalidateModelArgs:
    fingerprint: Hex16


@dataclasses.dataclass(frozen=True, slots=True)
class NixlHelloArgs:
    agent: str
    epoch: int = 0
    probe_address: int | None = None
    probe_length: int = 64


@dataclasses.dataclass(frozen=True, slots=True)
class AgentArgs:
    """The one argument of NIXL_PUT/GET/ALLOC/COMMIT/SERVER_AGENT: the client agent bound by NIXL_HELLO."""

    agent: str


@dataclasses.dataclass(frozen=True, slots=True)
class CountAnswer:
    """The answer of every INVALIDATE_* opcode."""

    count: int


@dataclasses.dataclass(frozen=True, slots=True)
class LookupAnswer:
    prefix_len: int
    lease_id: str | None
    lease_expires_at: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class SessionAnswer:
    """The answer of every SESSION_* opcode (the session's keys are its items)."""

    session_id: str
    state: str
    ttl_s: float
    expires_at: float
    parent_id: str | None
    fingerprint: Hex16


Args = (HelloArgs | LookupArgs | ReleaseLeaseArgs | SessionOpenArgs | SessionArgs | SessionAppendArgs
        | SessionResumeArgs | SessionSuspendArgs | SessionForkArgs | ChildrenArgs | InvalidatePrefixArgs
        | InvalidateModelArgs | NixlHelloArgs | AgentArgs)
R = TypeVar("R")

# Opcode -> the record of its request arguments; an opcode not listed takes no arguments.
REQUEST_ARGS: dict[Opcode, type[Any]] = {
    Opcode.HELLO: HelloArgs,
    Opcode.LOOKUP: LookupArgs,
    Opcode.RELEASE_LEASE: ReleaseLeaseArgs,
    Opcode.CHILDREN: ChildrenArgs,
    Opcode.SESSION_OPEN: SessionOpenArgs,
    Opcode.SESSION_APPEND: SessionAppendArgs,
    Opcode.SESSION_SUSPEND: SessionSuspendArgs,
    Opcode.SESSION_RESUME: SessionResumeArgs,
    Opcode.SESSION_FORK: SessionForkArgs,
    Opcode.SESSION_CLOSE: SessionArgs,
    Opcode.SESSION_INFO: SessionArgs,
    Opcode.INVALIDATE_PREFIX: InvalidatePrefixArgs,
    Opcode.INVALIDATE_SESSION: SessionArgs,
    Opcode.INVALIDATE_MODEL: InvalidateModelArgs,
    Opcode.NIXL_HELLO: NixlHelloArgs,
    Opcode.NIXL_PUT: AgentArgs,
    Opcode.NIXL_GET: AgentArgs,
    Opcode.NIXL_ALLOC: AgentArgs,
    Opcode.NIXL_COMMIT: AgentArgs,
    Opcode.NIXL_SERVER_AGENT: AgentArgs,
    Opcode.NIXL_CREDIT: AgentArgs,
    Opcode.NIXL_STORE: AgentArgs,
}
# Opcode -> the record of its answer arguments, where one is defined here.
ANSWER_ARGS: dict[Opcode, type[Any]] = {
    **{op: CountAnswer for op in (Opcode.INVALIDATE_KEYS, Opcode.INVALIDATE_PREFIX, Opcode.INVALIDATE_SESSION,
                                  Opcode.INVALIDATE_MODEL, Opcode.INVALIDATE_NAMESPACE)},
    **{op: SessionAnswer for op in (Opcode.SESSION_OPEN, Opcode.SESSION_APPEND, Opcode.SESSION_SUSPEND,
                                    Opcode.SESSION_RESUME, Opcode.SESSION_FORK, Opcode.SESSION_CLOSE,
                                    Opcode.SESSION_INFO)},
    Opcode.LOOKUP: LookupAnswer,
    Opcode.CHILDREN: ChildrenAnswer,
}

_SPEC_TYPES: dict[Any, str] = {str: "string", int: "int", float: "number", bool: "bool", Hex16: "hex16"}


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str
    kind: Any          # str, int, float or Hex16
    nullable: bool
    default: Any       # `...`: required
    omit_default: bool = False  # left out of `encode` while it holds its default

    @property
    def spec_type(self) -> str:
        return _SPEC_TYPES[self.kind] + ("|null" if self.nullable else "")


def _fields_of(cls: type[Any]) -> tuple[_Field, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union  # Hex16 | None
        nullable = union and type(None) in hint.__args__
        kind = next(a for a in hint.__args__ if a is not type(None)) if nullable else hint
        default = ... if field.default is dataclasses.MISSING else field.default
        out.append(_Field(field.name, kind, nullable, default, bool(field.metadata.get("omit_default"))))
    return tuple(out)


_FIELDS: dict[type[Any], tuple[_Field, ...]] = {
    cls: _fields_of(cls) for cls in {*REQUEST_ARGS.values(), *ANSWER_ARGS.values()}}


def decode(reader: MetaReader, cls: type[R]) -> R:
    """The frame's arguments as a `cls` record; a missing or mistyped argument is INVALID_ARGUMENT."""
    values = {}
    for f in _FIELDS[cls]:
        if f.kind is Hex16:
            values[f.name] = reader.hex_arg(f.name, HEX16_SIZE, f.default, nullable=f.nullable)
        else:
            values[f.name] = reader.arg(f.name, f.kind, f.default, nullable=f.nullable)
    return cls(**values)


def encode(record: Any) -> dict[str, Any]:
    """A record as the JSON argument object of a frame (Hex16 fields as lower-case hex)."""
    return {f.name: (value.hex() if f.kind is Hex16 and value is not None else value)
            for f in _FIELDS[type(record)] for value in (getattr(record, f.name),)
            if not (f.omit_default and value == f.default)}


def session_answer(info: SessionInfo) -> dict[str, Any]:
    return encode(SessionAnswer(info.session_id, info.state.value, info.ttl_s, info.expires_at, info.parent_id,
                                Hex16(info.fingerprint)))


def session_from(reader: MetaReader) -> SessionInfo:
    """A SESSION_* answer: its arguments, then its key items."""
    answer = decode(reader, SessionAnswer)
    try:
        state = SessionState(answer.state)
    except ValueError:
        raise ProtocolError(f"unknown session state {answer.state!r}") from None
    return SessionInfo(answer.session_id, state, tuple(reader.keys()), float(answer.ttl_s),
                       float(answer.expires_at), answer.parent_id, answer.fingerprint)


def lookup_answer(result: LookupResult) -> dict[str, Any]:
    return encode(LookupAnswer(result.prefix_len, result.lease_id, result.lease_expires_at))


def lookup_from(reader: MetaReader) -> LookupResult:
    answer = decode(reader, LookupAnswer)
    expires = answer.lease_expires_at
    return LookupResult(answer.prefix_len, answer.lease_id, None if expires is None else float(expires))


def check_request(opcode: Opcode, record: Any) -> None:
    """A sender's guard: `record` must be the record of `opcode`'s arguments (None: it takes none)."""
    expected = REQUEST_ARGS.get(opcode)
    if (record is None and expected is not None) or (record is not None and type(record) is not expected):
        wanted = expected.__name__ if expected else "no arguments"
        raise TypeError(f"{opcode.name} takes {wanted}, not {type(record).__name__}")


# ---- the records equal spec/operations.yaml -------------------------------------------------
def schema_problems(schema: dict[str, Any]) -> list[str]:
    """Every difference between the records here and the argument lists of `schema` (operations.yaml)."""
    problems: list[str] = []
    entries = {entry["name"]: entry for entry in schema["opcodes"]}
    for table, part in ((REQUEST_ARGS, "request"), (ANSWER_ARGS, "answer")):
        for opcode, entry in entries.items():
            section = entry.get(part) or {}
            stated = {a["name"]: (a["type"], bool(a["required"])) for a in section.get("args") or []}
            cls = table.get(Opcode[opcode])
            if cls is None:
                if part == "request" and stated:
                    problems.append(f"{opcode}: the schema's request arguments {sorted(stated)} have no record")
                continue
            ours = {f.name: (f.spec_type, f.default is ...) for f in _FIELDS[cls]}
            if ours != stated:
                problems.append(f"{opcode} {part}: record {cls.__name__} {ours} != schema {stated}")
    return problems


def _schema_path() -> Path:
    """spec/operations.yaml of a source checkout, else the copy installed as the data package memkv_spec."""
    checkout = Path(__file__).resolve().parents[2] / "spec" / "operations.yaml"
    if checkout.is_file():
        return checkout
    spec = importlib.util.find_spec("memkv_spec")
    if spec is None or not spec.submodule_search_locations:
        raise SchemaMismatch("spec/operations.yaml is missing: reinstall memkv")
    return Path(next(iter(spec.submodule_search_locations))) / "operations.yaml"


def check_schema(schema: dict[str, Any]) -> None:
    problems = schema_problems(schema)
    if problems:
        raise SchemaMismatch("wire records and spec/operations.yaml disagree:\n  " + "\n  ".join(problems))


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
check_schema(yaml.load(_schema_path().read_text(encoding="utf-8"), Loader=_LOADER))
