"""Anthropic Messages requests and replies as semantic-convention messages.

``system`` is given apart from the chat history, so it is the system instructions; a
``tool_result`` block is a ``tool_call_response`` part of the (user) message carrying it; a
``thinking`` block is a ``reasoning`` part. A reply is one output message.
"""

from __future__ import annotations

from typing import Any

from otel_margin.content.shapes import (
    arguments,
    finish_reason,
    generic,
    get,
    items,
    message,
    reasoning,
    text,
    text_part,
    tool_call,
    tool_call_response,
    tool_output,
)
from otel_margin.content.capped import plain


def blocks(content: Any) -> list[dict[str, Any]]:
    """A message's ``content`` (text, or content blocks, dicts or the SDK's models) as parts."""
    if content is None:
        return []
    raw = text(content)
    if raw is not None:
        return [text_part(raw)]
    return [_block(block) for block in items(content)]


def _block(block: Any) -> dict[str, Any]:
    kind = get(block, "type")
    if kind == "text" and text(get(block, "text")) is not None:
        return text_part(text(get(block, "text")))  # type: ignore[arg-type]
    if kind == "thinking" and text(get(block, "thinking")) is not None:
        return reasoning(text(get(block, "thinking")))  # type: ignore[arg-type]
    if kind == "tool_use":
        return tool_call(get(block, "id"), get(block, "name"), plain(get(block, "input")))
    if kind == "tool_result":
        return tool_call_response(get(block, "tool_use_id"), tool_output(get(block, "content")))
    if kind in ("image", "document"):
        source = get(block, "source")
        modality = "image" if kind == "image" else "document"
        origin = get(source, "type")
        if origin == "base64" and text(get(source, "data")) is not None:
            return {"type": "blob", "modality": modality, "mime_type": text(get(source, "media_type")),
                    "content": text(get(source, "data"))}
        if origin == "url" and text(get(source, "url")) is not None:
            return {"type": "uri", "modality": modality, "uri": text(get(source, "url"))}
        if origin == "file" and text(get(source, "file_id")) is not None:
            return {"type": "file", "modality": modality, "file_id": text(get(source, "file_id"))}
        if origin == "text" and text(get(source, "data")) is not None:
            return text_part(text(get(source, "data")))  # type: ignore[arg-type]
    return generic(block, kind)  # redacted thinking, server tools and their results, ...


def request(request: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """``(system instructions, input messages)`` of a Messages request."""
    system = blocks(request.get("system"))
    inputs = [message(get(m, "role"), blocks(get(m, "content"))) for m in items(request.get("messages"))]
    return system, inputs


def output(response: Any, error_type: str | None) -> list[dict[str, Any]]:
    """A complete reply (or ``messages.stream()``'s final snapshot) as its one output message."""
    if response is None or get(response, "content") is None:
        return []
    return [{"role": text(get(response, "role")) or "assistant", "parts": blocks(get(response, "content")),
             "finish_reason": finish_reason(get(response, "stop_reason"), error_type)}]


class MessagesStream:
    """Assembles a streamed reply's blocks from its events (or takes the SDK's snapshot)."""

    def __init__(self) -> None:
        self.blocks: dict[int, tuple[Any, list[str]]] = {}
        self.stop_reason: str | None = None
        self.snapshot: Any = None

    def add(self, event: Any) -> None:
        kind = get(event, "type")
        if kind == "content_block_start":
            index = get(event, "index")
            self.blocks[index if type(index) is int else len(self.blocks)] = (get(event, "content_block"), [])
        elif kind == "content_block_delta":
            index = get(event, "index")
            block = self.blocks.get(index if type(index) is int else -1)
            delta = get(event, "delta")
            if block is not None:
                for field in ("text", "partial_json", "thinking"):
                    piece = text(get(delta, field))
                    if piece:
                        block[1].append(piece)
        elif kind == "message_delta":
            self.stop_reason = text(get(get(event, "delta"), "stop_reason")) or self.stop_reason
        elif kind == "message":  # messages.stream(): the SDK's accumulated message
            self.snapshot = event

    def messages(self, error_type: str | None) -> list[dict[str, Any]]:
        if self.snapshot is not None:
            return output(self.snapshot, error_type)
        if not self.blocks:
            return []
        found = []
        for index in sorted(self.blocks):
            block, pieces = self.blocks[index]
            kind = get(block, "type")
            joined = "".join(pieces)
            if kind == "text":
                found.append(text_part((text(get(block, "text")) or "") + joined))
            elif kind == "thinking":
                found.append(reasoning((text(get(block, "thinking")) or "") + joined))
            elif kind == "tool_use":
                found.append(tool_call(get(block, "id"), get(block, "name"),
                                       arguments(joined) if joined else plain(get(block, "input"))))
            else:
                found.append(generic(block, kind))
        return [{"role": "assistant", "parts": found, "finish_reason": finish_reason(self.stop_reason, error_type)}]
