"""JSON request bodies: the one parser behind every route that takes JSON (the API's routes and
the vendor adapters' webhooks).

``loads(raw)`` is ``json.loads`` with its edges closed. Each of these is refused with
``InvalidJson``, whose message says what is wrong and where:

- a body that is not UTF-8 (RFC 8259 section 8.1; ``json.loads`` would also guess UTF-16/32);
- syntax errors, with the line and column ``json`` reports;
- ``NaN``, ``Infinity`` and ``-Infinity`` (Python's parser takes them; JSON has no such numbers)
  and numbers too large for a float (``1e400`` would become infinity);
- integers of more than ``MAX_INT_DIGITS`` digits (past 4,300 Python raises a bare ValueError;
  below that, such a number is no id, count or time the hub uses);
- nesting deeper than ``MAX_DEPTH`` (the C parser itself gives up near 1,000 with a
  RecursionError; the hub's payloads are a few levels deep);
- strings holding a lone UTF-16 surrogate (``"\\ud800"``): no character, and no store can keep it.

Exceptions::

    ValueError
     └── InvalidJson     the body is not JSON the hub takes; ``str(e)`` says why
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "InvalidJson", "loads"]

MAX_DEPTH = 64
MAX_INT_DIGITS = 64
# A \u escape of a UTF-16 surrogate (D800-DFFF); only bodies containing one are searched for a
# lone surrogate (a pair decodes to one character and is fine).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class InvalidJson(ValueError):
    """The body is not JSON the hub takes."""


def _constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not a JSON number (numbers must be finite)")


def _int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_INT_DIGITS:
        raise InvalidJson(f"a number has {digits} digits; at most {MAX_INT_DIGITS} are taken")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 24 else text[:20] + "..."
        raise InvalidJson(f"the number {shown} is too large")
    return value


def _check_shape(value: Any, *, strings: bool) -> None:
    """Depth at most ``MAX_DEPTH``; with ``strings``, no lone surrogate in any key or string."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth >= MAX_DEPTH:
                raise InvalidJson(f"the body is nested deeper than {MAX_DEPTH} levels")
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                if strings and isinstance(key, str):
                    _check_string(key)
                stack.append((child, depth + 1))
        elif strings and isinstance(node, str):
            _check_string(node)


def _check_string(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        code = f"\\u{ord(text[e.start]):04x}"
        raise InvalidJson(f"a string holds a lone surrogate ({code}), which is no character") from e


def loads(raw: bytes) -> Any:
    """The body as JSON; ``InvalidJson`` says what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidJson(f"the body is not UTF-8 (byte {e.start})") from e
    try:
        value = json.loads(text, parse_constant=_constant, parse_int=_int, parse_float=_float)
    except InvalidJson:
        raise
    except json.JSONDecodeError as e:
        raise InvalidJson(f"the body is not valid JSON: {e}") from e
    except RecursionError as e:
        raise InvalidJson(f"the body is nested deeper than {MAX_DEPTH} levels") from e
    nesting = raw.count(b"[") + raw.count(b"{")
    surrogates = _SURROGATE_ESCAPE.search(raw) is not None
    if nesting > MAX_DEPTH or surrogates:
        _check_shape(value, strings=surrogates)
    return value
