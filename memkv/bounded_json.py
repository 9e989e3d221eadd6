"""JSON decoding with every number bounded before conversion (MKV-SEC-050).

Python refuses integers of more than 4,300 digits with a ValueError that callers do not
expect; memkv refuses any number longer than MAX_NUMBER_CHARS first, as the caller's error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NoReturn

MAX_NUMBER_CHARS = 40  # a u64 has 20 digits; a double's shortest repr is at most 24 characters


def decoder(refuse: Callable[[str], NoReturn]) -> json.JSONDecoder:
    """A decoder whose numbers, constants (NaN, Infinity) and failures all end in `refuse`."""

    def bounded(convert: Callable[[str], Any]) -> Callable[[str], Any]:
        def parse(text: str) -> Any:
            if len(text) > MAX_NUMBER_CHARS:
                refuse(f"a JSON number of {len(text)} characters exceeds {MAX_NUMBER_CHARS}")
            return convert(text)
        return parse

    def constant(name: str) -> NoReturn:
        refuse(f"JSON constant {name} is not allowed")

    return json.JSONDecoder(parse_int=bounded(int), parse_float=bounded(float), parse_constant=constant)
