"""Limits on what one webhook can make the ingress and everything downstream do.

- JSON nesting: Python's parser recurses once per level and raises RecursionError near 1000 levels, at a
  depth that depends on the caller's own stack. A fixed, much lower limit makes "parseable" mean the same in
  the ingress, in the worker (which parses deeper in its stack) and in other teams' consumers (serde_json,
  for one, stops at 128). Offload's webhooks nest a handful of levels.
- Values that become the record's key or headers (``data.caseId``, ``event_id``, ``event_type``): they must
  be UTF-8 (a JSON ``\\udfff`` escape decodes to a lone surrogate, which has no UTF-8 form) and short. A
  caseId is a UUID (36 bytes) and an event_id Offload's ``evt_<caseId>_<type>_<ms>`` (about 80); a body
  near the size limit whose caseId is half of it would make a record Kafka refuses, and every id is kept
  in the worker's state, 64 per case.
"""

from __future__ import annotations

import json
from typing import Any

MAX_JSON_DEPTH = 128
MAX_ID_BYTES = 256


class UnusableId(ValueError):
    """A key or header value that cannot be written as it is; the message names the field and why."""


def load_json(body: bytes) -> Any:
    """The decoded body. Raises ValueError when it is not JSON or nests deeper than MAX_JSON_DEPTH."""
    too_deep = f"nested deeper than {MAX_JSON_DEPTH} levels"
    try:
        payload = json.loads(body)
    except RecursionError:
        raise ValueError(too_deep) from None
    # Nesting needs one bracket per level: a body with few brackets cannot be too deep, so the walk is
    # skipped for ordinary webhooks.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _deeper_than(payload, MAX_JSON_DEPTH):
        raise ValueError(too_deep)
    return payload


def _deeper_than(value: Any, limit: int) -> bool:
    # Iterative: a recursive walk would hit the very limit it is checking for.
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def encode_id(field: str, value: str) -> bytes:
    """``value`` as UTF-8 for a key or header. Raises UnusableId when it has no UTF-8 form or is too long."""
    try:
        encoded = value.encode()
    except UnicodeEncodeError:
        raise UnusableId(f"{field}: not valid Unicode (a lone surrogate escape)") from None
    if len(encoded) > MAX_ID_BYTES:
        raise UnusableId(f"{field}: longer than {MAX_ID_BYTES} bytes") from None
    return encoded


def usable_id(value: object) -> bytes | None:
    """``value`` as UTF-8 when it is a string that :func:`encode_id` accepts, else None."""
    if not isinstance(value, str):
        return None
    try:
        return encode_id("", value)
    except UnusableId:
        return None
