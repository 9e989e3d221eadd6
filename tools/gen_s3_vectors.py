#!/usr/bin/env python3
"""Regenerate spec/vectors/s3_names.json: S3 object names and the keys they map to (MKV-S3-010).

    python tools/gen_s3_vectors.py            # rewrite the file
    python tools/gen_s3_vectors.py --check    # exit 1 if it differs from what memkv computes
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from memkv.errors import MemkvError
from memkv.server.s3.names import object_key

PATH = Path(__file__).resolve().parent.parent / "spec" / "vectors" / "s3_names.json"
U64_MAX = 2**64 - 1
VALID = [("zero", "0"), ("one", "1"), ("kvbm-like", "1234567890123456789"), ("u64-max", str(U64_MAX)),
         ("u63-boundary", str(2**63)), ("raw-key", "00112233445566778899aabbccddeeff"),
         ("raw-key-all-digits", "0" * 32)]
INVALID = [("empty", ""), ("leading-zero", "01"), ("negative", "-1"), ("plus-sign", "+1"),
           ("over-u64", str(U64_MAX + 1)), ("twenty-nines", "9" * 20), ("twenty-one-digits", "1" * 21),
           ("upper-hex", "00112233445566778899AABBCCDDEEFF"), ("hex-31", "0" * 30 + "a"),
           ("hex-33", "a" * 33), ("path", "a/b"), ("space", " 1"), ("hex-prefix", "0x1f")]


def vectors() -> dict[str, object]:
    valid = [{"name": label, "object": obj, "key": object_key(obj).hex()} for label, obj in VALID]
    invalid = []
    for label, obj in INVALID:
        try:
            object_key(obj)
        except MemkvError as exc:
            invalid.append({"name": label, "object": obj, "error": exc.code.name})
        else:
            raise AssertionError(f"{obj!r} should be refused")
    return {"fingerprint": "00" * 16, "valid": valid, "invalid": invalid}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    text = json.dumps(vectors(), indent=1) + "\n"
    if parser.parse_args().check:
        return 0 if PATH.read_text(encoding="utf-8") == text else 1
    PATH.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
