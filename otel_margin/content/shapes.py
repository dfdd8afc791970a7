"""Reading helpers shared by the providers' content shapes: tolerant of any input shape.

An application may pass dicts, the SDKs' own models (a previous reply appended to the
history), tuples or other sequences; a provider reply may lack any field. These read what
is there and turn the rest into "absent".
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from otel_margin.content.capped import plain


def get(value: Any, name: str) -> Any:
    """Field ``name`` of a dict or an object; ``None`` when absent or an SDK "not given" sentinel."""
    if type(value) is dict:  # the common case first: isinstance against an ABC costs more
        found = value.get(name)
    elif isinstance(value, Mapping):
        found = value.get(name)
    else:
        found = getattr(value, name, None)
    if found is None or type(found) in _PLAIN:
        return found
    return None if type(found).__name__ in ("Omit", "NotGiven") else found


_PLAIN = frozenset((str, list, dict, int, float, bool))


def items(value: Any) -> Sequence[Any]:
    """``value`` if it is a list, tuple or other sequence (not text), else empty."""
    if isinstance(value, (list, tuple)):
        return value
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray)):
        return list(value)
    return ()


def text(value: Any) -> str | None:
    """``value`` if it is a string (a plain ``str``), else ``None``."""
    if type(value) is str:
        return value
    return str.__str__(value) if isinstance(value, str) else None


def text_part(content: str) -> dict[str, Any]:
    return {"type": "text", "content": content}


def tool_call(id_: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_call", "id": text(id_), "name": text(name) or "", "arguments": arguments}


def tool_call_response(id_: Any, response: Any) -> dict[str, Any]:
    return {"type": "tool_call_response", "id": text(id_), "response": response}


def reasoning(content: str) -> dict[str, Any]:
    return {"type": "reasoning", "content": content}


def generic(part: Any, kind: Any) -> dict[str, Any]:
    """A part of a type the conventions do not define: its own fields, under its own ``type``."""
    value = plain(part)
    fields = dict(value) if type(value) is dict else {"content": value}
    fields["type"] = text(kind) or "unknown"
    return fields


def media(url: Any, modality: str) -> dict[str, Any] | None:
    """A ``blob`` part for a ``data:`` URL, else a ``uri`` part; ``None`` without a URL."""
    url = text(url)
    if url is None:
        return None
    if url.startswith("data:") and "," in url:
        header, _, data = url[5:].partition(",")
        mime = header.split(";", 1)[0] or None
        return {"type": "blob", "modality": modality, "mime_type": mime, "content": data}
    return {"type": "uri", "modality": modality, "uri": url}


def arguments(value: Any) -> Any:
    """Tool-call arguments: JSON text parsed (as the conventions show them), else as given."""
    raw = text(value)
    if raw is None:
        return plain(value)
    try:
        return plain(json.loads(raw))
    except (ValueError, RecursionError):
        return raw


def tool_output(value: Any) -> Any:
    """A tool result: its text (text parts joined), else its plain value."""
    raw = text(value)
    if raw is not None:
        return raw
    parts = items(value)
    if parts and all(text(get(p, "text")) is not None and get(p, "type") in ("text", "input_text", "output_text")
                     for p in parts):
        return "".join(text(get(p, "text")) or "" for p in parts)
    return plain(value)


def message(role: Any, parts: list[dict[str, Any]], name: Any = None) -> dict[str, Any]:
    result: dict[str, Any] = {"role": text(role) or "unknown", "parts": parts}
    if text(name) is not None:
        result["name"] = text(name)
    return result


def finish_reason(reason: Any, error_type: str | None) -> str:
    """The provider's finish reason; ``error`` for a failed call, ``unknown`` when none was given."""
    return text(reason) or ("error" if error_type else "unknown")
