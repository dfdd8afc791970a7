"""Message content as JSON text of at most a given number of UTF-8 bytes, still valid JSON.

:func:`plain` turns whatever an application passed (dicts, SDK models, tuples, bytes, NaN,
cycles) into values JSON can hold; :func:`encode` writes them compactly and, when the text
is too long, cuts the longest strings first (each cut string ends with :data:`MARKER`),
and only if cutting every string is not enough keeps the first messages that fit. The
structure the conventions define (``type``, ``role``, ``finish_reason`` values) is never cut.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from typing import Any

MARKER = "...[truncated]"
"""Ends every string that was cut to fit the size cap, and replaces values nested too deep."""

MAX_DEPTH = 32
"""Nesting kept from an application's values (tool arguments, tool results); deeper is :data:`MARKER`."""

_KEEP = frozenset(("type", "role", "finish_reason"))
"""Keys whose short values are the conventions' vocabulary: never cut."""

_KEEP_LENGTH = 64


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-ready data (str / int / finite float / bool / None / list / dict with str keys)."""
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return value
    if kind is float:
        return value if math.isfinite(value) else str(value)
    if depth >= MAX_DEPTH:
        return MARKER
    if isinstance(value, Mapping):
        return {_key(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)  # bool is handled above; IntEnum and the like
    if isinstance(value, float):
        return plain(float(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    dump = getattr(value, "model_dump", None)  # the SDKs' pydantic models
    if callable(dump):
        try:
            return plain(dump(mode="json", exclude_unset=True), depth + 1)
        except Exception:  # noqa: BLE001 - a model that cannot dump itself: its text
            pass
    return str(value)


def _key(key: Any) -> str:
    if type(key) is str:
        return key
    if isinstance(key, str):
        return str.__str__(key)
    return str(plain(key, MAX_DEPTH - 1)) if not isinstance(key, (Mapping, list, tuple)) else MARKER


def encode(value: list[Any], max_bytes: int) -> tuple[str, bool]:
    """``value`` (plain data) as compact JSON of at most ``max_bytes`` UTF-8 bytes; True if it was cut.

    ``max_bytes`` must be at least 2 (``[]``). Lone surrogates, which UTF-8 cannot carry,
    become ``?``.
    """
    data = _dumps(value)
    if len(data) <= max_bytes:
        return data.decode("utf-8"), False
    fitted = _cut_strings(value, max_bytes, len(data))
    if fitted is not None:
        return fitted, True
    # Even with every string cut the structure is too long: keep the longest prefix of
    # messages (or parts) whose structure fits, then let their strings use what is left.
    # Compact JSON of a list is "[" + ",".join(items) + "]", so item sizes add up exactly.
    size, kept = 2, 0
    for item in value:
        size += len(_dumps(_shrink(item, 0))) + (1 if kept else 0)
        if size > max_bytes:
            break
        kept += 1
    prefix = value[:kept]
    fitted = _cut_strings(prefix, max_bytes, len(_dumps(prefix)))
    return (fitted if fitted is not None else "[]"), True


def _dumps(value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8", "replace")


def _cut_strings(value: list[Any], max_bytes: int, size: int) -> str | None:
    """The JSON of ``value`` (``size`` bytes) with its strings cut to the longest common length that fits, or None."""
    if size <= max_bytes:
        return _dumps(value).decode("utf-8")
    lengths = sorted(_string_lengths(value, []), reverse=True)
    excess = size - max_bytes
    # The longest limit whose cuts save at least ``excess`` characters (a character is at
    # least a byte, so the bytes saved are at least that); then checked on the real text.
    low, high = 0, lengths[0] if lengths else 0
    while low < high:
        middle = (low + high + 1) // 2
        if _saved(lengths, middle) >= excess:
            low = middle
        else:
            high = middle - 1
    limit = low
    while True:
        data = _dumps(_shrink(value, limit))
        if len(data) <= max_bytes:
            return data.decode("utf-8")
        if limit == 0:
            return None
        limit = limit * 3 // 4


def _saved(lengths: list[int], limit: int) -> int:
    total = 0
    floor = limit + len(MARKER)
    for length in lengths:
        if length <= floor:
            break
        total += length - floor
    return total


def _string_lengths(value: Any, found: list[int]) -> list[int]:
    kind = type(value)
    if kind is str:
        found.append(len(value))
    elif kind is dict:
        for key, item in value.items():
            found.append(len(key))
            if not _kept(key, item):
                _string_lengths(item, found)
    elif kind is list:
        for item in value:
            _string_lengths(item, found)
    return found


def _shrink(value: Any, limit: int) -> Any:
    """``value`` with every string longer than ``limit`` characters cut to ``limit`` plus :data:`MARKER`."""
    kind = type(value)
    if kind is str:
        return value[:limit] + MARKER if len(value) > limit + len(MARKER) else value
    if kind is dict:
        return {_shrink(k, limit): (v if _kept(k, v) else _shrink(v, limit)) for k, v in value.items()}
    if kind is list:
        return [_shrink(item, limit) for item in value]
    return value


def _kept(key: str, value: Any) -> bool:
    return key in _KEEP and type(value) is str and len(value) <= _KEEP_LENGTH
