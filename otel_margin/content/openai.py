"""OpenAI Chat Completions and Responses requests and replies as semantic-convention messages.

Chat Completions: the ``system`` / ``developer`` messages are part of the chat history, so
they stay in ``gen_ai.input.messages``; a ``tool`` message is a ``tool_call_response`` part.
Responses: ``instructions`` are the system instructions; the reply's output items (text,
function calls, reasoning, built-in tool calls) are one output message.
"""

from __future__ import annotations

import json
from typing import Any

from otel_margin.content.shapes import (
    arguments,
    finish_reason,
    generic,
    get,
    items,
    media,
    message,
    reasoning,
    text,
    text_part,
    tool_call,
    tool_call_response,
    tool_output,
)

_TEXT_TYPES = ("text", "input_text", "output_text")


def parts(content: Any) -> list[dict[str, Any]]:
    """A message's ``content`` (text, or content parts of either API) as parts."""
    if content is None:
        return []
    raw = text(content)
    if raw is not None:
        return [text_part(raw)]
    found: list[dict[str, Any]] = []
    for part in items(content):
        kind = get(part, "type")
        converted: dict[str, Any] | None = None
        if kind in _TEXT_TYPES and text(get(part, "text")) is not None:
            converted = text_part(text(get(part, "text")))  # type: ignore[arg-type]
        elif kind == "refusal" and text(get(part, "refusal")) is not None:
            converted = {"type": "refusal", "content": text(get(part, "refusal"))}
        elif kind == "image_url":
            converted = media(get(get(part, "image_url"), "url"), "image")
        elif kind == "input_image":
            converted = media(get(part, "image_url"), "image") or _file(get(part, "file_id"), "image")
        elif kind == "input_audio":
            audio = get(part, "input_audio")
            if text(get(audio, "data")) is not None:
                fmt = text(get(audio, "format"))
                converted = {"type": "blob", "modality": "audio", "mime_type": f"audio/{fmt}" if fmt else None,
                             "content": text(get(audio, "data"))}
        elif kind in ("file", "input_file"):
            file = get(part, "file") if kind == "file" else part
            converted = (_file(get(file, "file_id"), "document") or media(get(file, "file_url"), "document")
                         or _blob(get(file, "file_data"), "document"))
        found.append(converted if converted is not None else generic(part, kind))
    return found


def _file(file_id: Any, modality: str) -> dict[str, Any] | None:
    return {"type": "file", "modality": modality, "file_id": text(file_id)} if text(file_id) else None


def _blob(data: Any, modality: str) -> dict[str, Any] | None:
    data = text(data)
    if data is None:
        return None
    return media(data, modality) if data.startswith("data:") else {"type": "blob", "modality": modality,
                                                                   "content": data}


# --- Chat Completions --------------------------------------------------------------------


def chat_request(request: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """``(system instructions, input messages)`` of a chat request (no separate instructions)."""
    return [], [chat_message(m) for m in items(request.get("messages"))]


def chat_message(value: Any) -> dict[str, Any]:
    """One chat message (a request's, or a reply's ``choices[i].message``)."""
    role = get(value, "role")
    content = get(value, "content")
    if role in ("tool", "function"):
        response = tool_call_response(get(value, "tool_call_id"), tool_output(content))
        return message(role, [response], get(value, "name"))
    found: list[dict[str, Any]] = []
    thought = text(get(value, "reasoning_content"))  # OpenAI-compatible providers' reasoning (DeepSeek)
    if thought:
        found.append(reasoning(thought))
    found.extend(parts(content))
    refusal = text(get(value, "refusal"))
    if refusal:
        found.append({"type": "refusal", "content": refusal})
    for call in items(get(value, "tool_calls")):
        function = get(call, "function")
        if function is not None:
            found.append(tool_call(get(call, "id"), get(function, "name"), arguments(get(function, "arguments"))))
        else:  # a custom tool: free-form input
            custom = get(call, "custom")
            found.append(tool_call(get(call, "id"), get(custom, "name"), arguments(get(custom, "input"))))
    legacy = get(value, "function_call")
    if legacy is not None:
        found.append(tool_call(None, get(legacy, "name"), arguments(get(legacy, "arguments"))))
    return message(role, found, get(value, "name"))


def chat_output(response: Any, error_type: str | None) -> list[dict[str, Any]]:
    """One output message per choice of a complete reply."""
    found = []
    for choice in items(get(response, "choices")):
        result = chat_message(get(choice, "message"))
        result["role"] = text(get(get(choice, "message"), "role")) or "assistant"
        result["finish_reason"] = finish_reason(get(choice, "finish_reason"), error_type)
        found.append(result)
    return found


class ChatStream:
    """Assembles a chat stream's choices from its deltas (SDK chunks, or tapped event text)."""

    def __init__(self) -> None:
        self.choices: dict[int, dict[str, Any]] = {}

    def add(self, chunk: Any) -> None:
        if type(chunk) is str:
            if not chunk.startswith("{"):
                return  # "[DONE]"
            try:
                chunk = json.loads(chunk)
            except (ValueError, RecursionError):
                return
        for choice in items(get(chunk, "choices")):
            index = get(choice, "index")
            state = self.choices.setdefault(index if type(index) is int else 0,
                                            {"text": [], "refusal": [], "reasoning": [], "tools": {}, "reason": None})
            delta = get(choice, "delta")
            for key, field in (("text", "content"), ("refusal", "refusal"), ("reasoning", "reasoning_content")):
                piece = text(get(delta, field))
                if piece:
                    state[key].append(piece)
            for call in items(get(delta, "tool_calls")):
                position = get(call, "index")
                tool = state["tools"].setdefault(position if type(position) is int else len(state["tools"]),
                                                 {"id": None, "name": [], "arguments": []})
                if text(get(call, "id")):
                    tool["id"] = text(get(call, "id"))
                function = get(call, "function")
                for key in ("name", "arguments"):
                    piece = text(get(function, key))
                    if piece:
                        tool[key].append(piece)
            reason = text(get(choice, "finish_reason"))
            if reason:
                state["reason"] = reason

    def messages(self, error_type: str | None) -> list[dict[str, Any]]:
        found = []
        for index in sorted(self.choices):
            state = self.choices[index]
            result: list[dict[str, Any]] = []
            if state["reasoning"]:
                result.append(reasoning("".join(state["reasoning"])))
            if state["text"]:
                result.append(text_part("".join(state["text"])))
            if state["refusal"]:
                result.append({"type": "refusal", "content": "".join(state["refusal"])})
            for position in sorted(state["tools"]):
                tool = state["tools"][position]
                result.append(tool_call(tool["id"], "".join(tool["name"]), arguments("".join(tool["arguments"]))))
            found.append({"role": "assistant", "parts": result,
                          "finish_reason": finish_reason(state["reason"], error_type)})
        return found


# --- Responses ----------------------------------------------------------------------------


def responses_request(request: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """``(system instructions, input messages)`` of a Responses request."""
    instructions = request.get("instructions")
    if text(instructions) is not None:
        system = [text_part(text(instructions))]  # type: ignore[arg-type]
    else:
        system = [part for m in responses_input(instructions) for part in m["parts"]]
    return system, responses_input(request.get("input"))


def responses_input(value: Any) -> list[dict[str, Any]]:
    """A Responses ``input``: text (one user message) or input items, one message each."""
    if value is None:
        return []
    if text(value) is not None:
        return [message("user", [text_part(text(value))])]  # type: ignore[arg-type]
    found = []
    for item in items(value):
        kind = get(item, "type")
        role = get(item, "role")
        if text(role) is not None and kind in (None, "message"):
            found.append(message(role, parts(get(item, "content"))))
        elif kind == "function_call_output" or kind == "custom_tool_call_output":
            found.append(message("tool", [tool_call_response(get(item, "call_id"), tool_output(get(item, "output")))]))
        else:
            found.append(message(role or "assistant", _output_item(item)))
    return found


def _output_item(item: Any) -> list[dict[str, Any]]:
    kind = get(item, "type")
    if kind == "message":
        return parts(get(item, "content"))
    if kind == "function_call":
        return [tool_call(get(item, "call_id"), get(item, "name"), arguments(get(item, "arguments")))]
    if kind == "custom_tool_call":
        return [tool_call(get(item, "call_id"), get(item, "name"), arguments(get(item, "input")))]
    if kind == "reasoning":
        texts = [text(get(s, "text")) for s in items(get(item, "summary"))]
        texts += [text(get(c, "text")) for c in items(get(item, "content"))]
        return [reasoning(t) for t in texts if t]
    return [generic(item, kind)]  # built-in tools (web search, file search, ...), item references


def responses_output(response: Any, error_type: str | None) -> list[dict[str, Any]]:
    """A complete Responses reply as its one output message."""
    output = items(get(response, "output"))
    if response is None or (not output and get(response, "status") is None):
        return []
    found = [part for item in output for part in _output_item(item)]
    return [{"role": "assistant", "parts": found, "finish_reason": _responses_finish(response, found, error_type)}]


def _responses_finish(response: Any, found: list[dict[str, Any]], error_type: str | None) -> str:
    status = text(get(response, "status"))
    if status == "completed":
        return "tool_call" if any(p["type"] == "tool_call" for p in found) else "stop"
    if status == "incomplete":
        reason = text(get(get(response, "incomplete_details"), "reason"))
        return {"max_output_tokens": "length", "content_filter": "content_filter"}.get(reason or "", reason or status)
    if status == "failed":
        return "error"
    return finish_reason(status, error_type)


class ResponsesStream:
    """A Responses stream's reply: its final response, else what its events carried so far."""

    _FINAL = ("response.completed", "response.incomplete", "response.failed")

    def __init__(self) -> None:
        self.final: Any = None
        self.items: dict[int, Any] = {}
        self.texts: dict[int, list[str]] = {}

    def add(self, chunk: Any) -> None:
        kind = get(chunk, "type")
        if kind in self._FINAL:
            self.final = get(chunk, "response")
        elif kind == "response.output_item.done":
            index = get(chunk, "output_index")
            self.items[index if type(index) is int else len(self.items)] = get(chunk, "item")
        elif kind == "response.output_text.delta" and text(get(chunk, "delta")):
            index = get(chunk, "output_index")
            self.texts.setdefault(index if type(index) is int else 0, []).append(text(get(chunk, "delta")))  # type: ignore[arg-type]

    def messages(self, error_type: str | None) -> list[dict[str, Any]]:
        if self.final is not None:
            return responses_output(self.final, error_type)
        found: list[dict[str, Any]] = []
        for index in sorted(set(self.items) | set(self.texts)):
            if index in self.items:
                found.extend(_output_item(self.items[index]))
            else:
                found.append(text_part("".join(self.texts[index])))
        if not found:
            return []
        return [{"role": "assistant", "parts": found, "finish_reason": finish_reason(None, error_type)}]
