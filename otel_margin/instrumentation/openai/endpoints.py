"""How to read OpenAI calls: Chat Completions, Responses, Embeddings.

Token facts kept here: ``prompt_tokens`` already includes ``cached_tokens`` (so it is the
semantic-convention input count as is); ``completion_tokens`` includes reasoning tokens;
chat streams carry usage only with ``stream_options.include_usage``, in one extra chunk
with empty ``choices`` that we hide from callers who did not ask for it.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

from otel_margin.call import LLMCall, Usage
from otel_margin.instrumentation import fields
from otel_margin.pipeline import Endpoint, Settings, StreamObserver
from otel_margin.providers import Server
from otel_margin.streams import EventTap

_INJECTED = "include_usage_injected"


class OpenAIEndpoint(Endpoint):
    """An endpoint of the ``openai`` SDK, whose client may talk to any OpenAI-compatible provider."""

    provider = "openai"

    def server(self, instance: Any, settings: Settings) -> Server | None:
        # The resource's client: its class and base URL say which provider this is (cached per URL).
        client = getattr(instance, "_client", None)
        return None if client is None else settings.servers.of(client)


class ChatCompletions(OpenAIEndpoint):
    operation = "chat"
    api = "chat.completions"

    def prepare(self, call: LLMCall, settings: Settings) -> None:
        if not call.stream or not settings.include_usage:
            return
        params = call.params
        options = params.get("stream_options")
        extra = params.get("extra_body")
        if isinstance(extra, Mapping) and "stream_options" in extra:
            return  # the caller decided; respect it
        if isinstance(options, dict):
            if "include_usage" in options:
                return  # the caller decided; respect it
            params["stream_options"] = {**options, "include_usage": True}
        elif options is None or _is_omitted(options):
            if extra is not None and not isinstance(extra, Mapping):
                return
            # Into the body as is: the SDK's typed transform of a new parameter costs more
            # than the rest of our work on the call.
            params["extra_body"] = {**(extra or {}), "stream_options": {"include_usage": True}}
        else:
            return
        call.notes[_INJECTED] = True

    def read_response(self, call: LLMCall, response: Any) -> None:
        call.response_model = fields.text(getattr(response, "model", None))
        call.response_id = fields.text(getattr(response, "id", None))
        choices = fields.items(getattr(response, "choices", None))
        call.finish_reasons = tuple(r for r in (fields.text(getattr(c, "finish_reason", None)) for c in choices) if r)
        call.usage = chat_usage(getattr(response, "usage", None))

    def output_text(self, response: Any) -> str:
        parts = []
        for choice in fields.items(getattr(response, "choices", None)):
            content = getattr(getattr(choice, "message", None), "content", None)
            if isinstance(content, str):
                parts.append(content)
        return "".join(parts)

    def stream_observer(self, call: LLMCall) -> StreamObserver:
        return ChatStreamObserver()

    def hidden_chunk(self, call: LLMCall) -> Callable[[Any], bool] | None:
        return _is_usage_only if call.notes.get(_INJECTED) else None

    def tap_event(self, call: LLMCall) -> EventTap:
        # Without an injection the tap only lets the observer read the events' text.
        return _INJECTED_USAGE_TAP if call.notes.get(_INJECTED) else _READ_ONLY_TAP


def _is_omitted(value: Any) -> bool:
    return type(value).__name__ in ("Omit", "NotGiven")


def _is_usage_only(chunk: Any) -> bool:
    """The usage chunk ``include_usage`` adds: usage and no choices."""
    try:
        return getattr(chunk, "usage", None) is not None and not getattr(chunk, "choices", None)
    except Exception:  # noqa: BLE001 - a chunk of another shape is the caller's
        return False


def _usage_only_event(data: str) -> Any:
    """The usage chunk ``include_usage`` adds, as wire JSON (a dict); ``None`` for any other event.

    Exactly what :func:`_is_usage_only` would hide once parsed (usage, and no choices: a
    malformed chunk without a ``choices`` key included), so the tap leaves nothing to hide.
    Runs only on the events that do not end with ``"usage":null``: the usage chunk, ``[DONE]``.
    """
    if '"usage"' not in data:
        return None
    try:
        event = json.loads(data)
    except (ValueError, RecursionError):
        return None  # the SDK meets the same text and decides
    if type(event) is dict and not event.get("choices") and event.get("usage") is not None:
        return event
    return None


_INJECTED_USAGE_TAP = EventTap(suffix=',"usage":null}', replacement="}", take=_usage_only_event)
"""What the tap does with chat stream events when we injected ``include_usage``.

Every chunk then ends with ``"usage":null`` (the key is the object's last): it is dropped,
so the caller's chunks are those it would get without us (``to_dict()`` included) and the
SDK does not parse a field per chunk. The usage event is taken (:func:`_usage_only_event`).
"""

_READ_ONLY_TAP = EventTap()


class ChatStreamObserver(StreamObserver):
    """Reads chat chunks: the SDK's, or a tapped stream's event text and taken usage (wire JSON)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.finish_reasons: dict[int, str] = {}

    def observe(self, call: LLMCall, chunk: Any) -> None:
        chunk = _wire(chunk)
        get = fields.get
        if call.response_model is None:
            call.response_model = fields.text(get(chunk, "model"))
            call.response_id = fields.text(get(chunk, "id"))
        for choice in fields.items(get(chunk, "choices")):
            delta = get(choice, "delta")
            content = get(delta, "content")
            if isinstance(content, str):
                self.parts.append(content)
            for tool_call in fields.items(get(delta, "tool_calls")):
                arguments = get(get(tool_call, "function"), "arguments")
                if isinstance(arguments, str):
                    self.parts.append(arguments)
            reason = fields.text(get(choice, "finish_reason"))
            if reason:
                self.finish_reasons[fields.count(get(choice, "index")) or 0] = reason
        usage = get(chunk, "usage")
        if usage is not None:
            call.usage = chat_usage(usage)

    def read(self, call: LLMCall, chunks: list[Any]) -> None:
        if call.usage is None:
            # A stream that ends with its usage (the last chunk, then "[DONE]"): the text, kept
            # only to estimate tokens, is not needed; the finish reasons are in the last chunks.
            for index in range(len(chunks) - 1, max(len(chunks) - 3, -1), -1):
                last = _wire(chunks[index])
                if fields.get(last, "usage") is None:
                    continue
                self.observe(call, last)
                if call.usage is not None:
                    self._read_finish_reasons(chunks[:index], _choice_count(call))
                    return
        super().read(call, chunks)

    def _read_finish_reasons(self, chunks: list[Any], choices: int) -> None:
        reasons = self.finish_reasons
        for chunk in reversed(chunks):
            if len(reasons) >= choices:
                return
            for choice in fields.items(fields.get(_wire(chunk), "choices")):
                reason = fields.text(fields.get(choice, "finish_reason"))
                if reason:
                    reasons.setdefault(fields.count(fields.get(choice, "index")) or 0, reason)

    def finish(self, call: LLMCall) -> None:
        call.finish_reasons = tuple(self.finish_reasons[i] for i in sorted(self.finish_reasons))

    def text(self) -> str:
        return "".join(self.parts)


def _wire(chunk: Any) -> Any:
    """A tapped event's text as wire JSON (``None`` for ``[DONE]`` or broken JSON); anything else as is."""
    if type(chunk) is not str:
        return chunk
    try:
        return json.loads(chunk)
    except (ValueError, RecursionError):
        return None


def _choice_count(call: LLMCall) -> int:
    n = call.params.get("n")
    return n if type(n) is int and n > 0 else 1


class Responses(OpenAIEndpoint):
    operation = "chat"
    api = "responses"

    def read_response(self, call: LLMCall, response: Any) -> None:
        call.response_model = fields.text(getattr(response, "model", None))
        call.response_id = fields.text(getattr(response, "id", None))
        status = fields.text(getattr(response, "status", None))
        call.finish_reasons = (status,) if status else ()
        call.usage = responses_usage(getattr(response, "usage", None))

    def output_text(self, response: Any) -> str:
        try:
            # The SDK computes output_text from output, which a malformed response lacks.
            text = response.output_text
        except Exception:  # noqa: BLE001
            return ""
        return text if isinstance(text, str) else ""

    def stream_observer(self, call: LLMCall) -> StreamObserver:
        return ResponsesStreamObserver(self)


class ResponsesStreamObserver(StreamObserver):
    _FINAL = ("response.completed", "response.incomplete", "response.failed")

    def __init__(self, endpoint: Responses) -> None:
        self.endpoint = endpoint
        self.parts: list[str] = []

    def observe(self, call: LLMCall, chunk: Any) -> None:
        kind = getattr(chunk, "type", None)
        if kind == "response.output_text.delta":
            delta = getattr(chunk, "delta", None)
            if isinstance(delta, str):
                self.parts.append(delta)
        elif kind == "response.created" and call.response_model is None:
            response = getattr(chunk, "response", None)
            call.response_model = fields.text(getattr(response, "model", None))
            call.response_id = fields.text(getattr(response, "id", None))
        elif kind in self._FINAL:
            self.endpoint.read_response(call, getattr(chunk, "response", None))

    def text(self) -> str:
        return "".join(self.parts)


class Embeddings(OpenAIEndpoint):
    operation = "embeddings"
    api = "embeddings"

    def read_response(self, call: LLMCall, response: Any) -> None:
        call.response_model = fields.text(getattr(response, "model", None))
        usage = getattr(response, "usage", None)
        prompt = fields.count(getattr(usage, "prompt_tokens", None))
        call.usage = None if prompt is None else Usage(input_tokens=prompt)


def chat_usage(usage: Any) -> Usage | None:
    """Chat Completions usage in semantic-convention terms; ``None`` when it is unusable."""
    return _usage(usage, "prompt", "completion")


def responses_usage(usage: Any) -> Usage | None:
    """Responses API usage in semantic-convention terms; ``None`` when it is unusable."""
    return _usage(usage, "input", "output")


def _usage(usage: Any, input_: str, output: str) -> Usage | None:
    """Both APIs count cached input inside input and reasoning inside output; only names differ."""
    get = fields.get
    input_tokens = fields.count(get(usage, f"{input_}_tokens"))
    output_tokens = fields.count(get(usage, f"{output}_tokens"))
    if input_tokens is None or output_tokens is None:
        return None
    cached = fields.count(get(get(usage, f"{input_}_tokens_details"), "cached_tokens")) or 0
    reasoning = fields.count(get(get(usage, f"{output}_tokens_details"), "reasoning_tokens")) or 0
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=min(cached, input_tokens),
        reasoning_tokens=min(reasoning, output_tokens),
    )
