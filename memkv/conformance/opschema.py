"""The per-opcode schema of spec/operations.yaml: argument checking and the tables of spec/wire.md.

Pure: the schema is read from a path given by the caller (the spec is not part of the package).
`check_args` tells whether a JSON argument object conforms to an opcode's request or answer
schema; `render_tables` writes the markdown of spec/wire.md section 9, which a test keeps equal
to that section (`python -m memkv.conformance.opschema spec/operations.yaml spec/wire.md` rewrites it).
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from typing import Any

import yaml

BEGIN = "<!-- begin: generated from spec/operations.yaml by memkv.conformance.opschema; do not edit -->"
END = "<!-- end: generated from spec/operations.yaml -->"
_HEX16 = re.compile(r"[0-9a-fA-F]{32}")
RECORD_SIZES = {"u8": 1, "u16": 2, "u32": 4, "u64": 8}


def load(path: str | Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return doc


def opcode_entry(schema: dict[str, Any], name: str) -> dict[str, Any]:
    for entry in schema["opcodes"]:
        if entry["name"] == name:
            return dict(entry)
    raise KeyError(name)


def _type_ok(kind: str, value: Any) -> bool:
    if kind.endswith("|null"):
        return value is None or _type_ok(kind[: -len("|null")], value)
    if kind == "string":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "hex16":
        return isinstance(value, str) and _HEX16.fullmatch(value) is not None
    if kind == "object":
        return isinstance(value, dict)
    if kind == "list[string]":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    raise ValueError(f"unknown schema type {kind!r}")


def check_args(schema: dict[str, Any], opcode: str, side: str, args: dict[str, Any]) -> list[str]:
    """Every way `args` departs from the `side` ("request" or "answer") of `opcode`; [] when it conforms."""
    part = opcode_entry(schema, opcode)[side]
    if part is None:
        return [f"{opcode} has no {side}"]
    problems = []
    for spec in part["args"]:
        name = spec["name"]
        if name not in args:
            if spec["required"]:
                problems.append(f"{opcode} {side}: argument {name!r} is missing")
            continue
        if not _type_ok(spec["type"], args[name]):
            problems.append(f"{opcode} {side}: argument {name!r} is not {spec['type']}: {args[name]!r}")
    if part.get("open"):
        return problems
    known = {spec["name"] for spec in part["args"]}
    problems += [f"{opcode} {side}: argument {name!r} is not in the schema" for name in sorted(set(args) - known)]
    return problems


def record_fixed_size(schema: dict[str, Any], record: str) -> int:
    """Bytes of a record's fixed-size fields (variable `bytes[field]` parts excluded)."""
    size = 0
    for field in schema["records"][record]:
        kind = field["type"]
        if kind in RECORD_SIZES:
            size += RECORD_SIZES[kind]
        elif re.fullmatch(r"bytes\[\d+\]", kind):
            size += int(kind[6:-1])
    return size


# ---- markdown ---------------------------------------------------------------------------------
def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|") if text not in (None, "") else "-"


def _arg_table(args: list[dict[str, Any]]) -> list[str]:
    if not args:
        return ["no arguments (`{}`)", ""]
    lines = ["| argument | type | required | bounds | meaning |", "|---|---|---|---|---|"]
    for a in args:
        lines.append(f"| `{a['name']}` | {_cell(a['type'])} | {'yes' if a['required'] else 'no'} | "
                     f"{_cell(a['bounds'])} | {_cell(a['meaning'])} |")
    return [*lines, ""]


def _side(title: str, part: dict[str, Any] | None) -> list[str]:
    if part is None:
        return [f"*{title}*: none (ERROR is only an answer).", ""]
    items = "no items" if part["items"] == "none" else f"items: `{part['items']}` records, one per batch entry"
    payload = "a payload: the items' bytes in item order" if part["payload"] else "no payload"
    lines = [f"*{title}*: {items}; {payload}.", "", *_arg_table(part["args"])]
    if part.get("open"):
        lines += ["Further fields may follow these (target-wide totals).", ""]
    return lines


def render_tables(schema: dict[str, Any]) -> str:
    lines = [BEGIN, "", "#### Item records", ""]
    for name, fields in schema["records"].items():
        lines += [f"`{name}`:", "", "| field | type | meaning |", "|---|---|---|"]
        lines += [f"| `{f['field']}` | {_cell(f['type'])} | {_cell(f['meaning'])} |" for f in fields]
        lines.append("")
    lines += [f"Errors every request may get: {', '.join(f'`{e}`' for e in schema['common_errors'])}.", ""]
    for entry in schema["opcodes"]:
        since = f", since {entry['since']}" if "since" in entry else ""
        lines += [f"#### 0x{entry['code']:02X} {entry['name']} (role: {entry['role']}{since})", ""]
        lines += _side("Request", entry["request"]) + _side("Answer", entry["answer"])
        errors = entry["errors"]
        codes = ", ".join(f"`{e}`" if ":" not in e else f"`{e.split(': ')[1]}` (per item)" for e in errors)
        lines += [f"Errors: {codes or 'only the common ones'}.", ""]
    lines.append(END)
    return "\n".join(lines)


def generated_block(text: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[start:end]


def main(argv: list[str]) -> int:
    schema_path, wire_path = Path(argv[0]), Path(argv[1])
    text = wire_path.read_text(encoding="utf-8")
    wire_path.write_text(text.replace(generated_block(text), render_tables(load(schema_path))), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
