"""How to read Anthropic Messages calls.

Token facts kept here: Anthropic's ``input_tokens`` EXCLUDES cache reads and cache writes,
so the semantic-convention input count is ``input_tokens + cache_read_input_tokens +
cache_creation_input_tokens``; a streamed message's output count is the LAST
``message_delta`` usage (cumulative), not ``message_start`` + deltas. Cache writes with a
one-hour TTL are billed higher than five-minute ones: their count,
``cache_creation.ephemeral_1h_input_tokens``, is part of ``cache_creation_input_tokens`` and
only ``message_start`` carries it in a stream (``message_delta`` repeats the totals only).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from otel_margin.call import LLMCall, Usage
from otel_margin.instrumentation import fields
from otel_margin.pipeline import Endpoint, StreamObserver
from otel_margin.tokens import estimate_output_tokens


class Messages(Endpoint):
    provider = "anthropic"
    operation = "chat"
    api = "messages"

    def read_response(self, call: LLMCall, response: Any) -> None:
        call.response_model = fields.text(getattr(response, "model", None))
        call.response_id = fields.text(getattr(response, "id", None))
        reason = fields.text(getattr(response, "stop_reason", None))
        call.finish_reasons = (reason,) if reason else ()
        call.usage = messages_usage(getattr(response, "usage", None))

    def output_text(self, response: Any) -> str:
        parts = []
        for block in fields.items(getattr(response, "content", None)):
            for field in ("text", "thinking"):
                value = getattr(block, field, None)
                if isinstance(value, str):
                    parts.append(value)
        return "".join(parts)

    def stream_observer(self, call: LLMCall) -> StreamObserver:
        return MessagesStreamObserver(self)


class MessagesStream(Messages):
    """``messages.stream()``: always a stream, read from the SDK's accumulated snapshot."""

    always_stream = True


class MessagesStreamObserver(StreamObserver):
    def __init__(self, endpoint: Messages) -> None:
        self.endpoint = endpoint
        self.start_usage: Any = None
        self.delta_usage: Any = None
        self.parts: list[str] = []
        self.stopped = False
        self.snapshot: Any = None

    def observe(self, call: LLMCall, chunk: Any) -> None:
        kind = getattr(chunk, "type", None)
        if kind == "content_block_delta":
            delta = getattr(chunk, "delta", None)
            for field in ("text", "thinking", "partial_json"):
                value = getattr(delta, field, None)
                if isinstance(value, str):
                    self.parts.append(value)
        elif kind == "message_start":
            message = getattr(chunk, "message", None)
            call.response_model = fields.text(getattr(message, "model", None))
            call.response_id = fields.text(getattr(message, "id", None))
            self.start_usage = getattr(message, "usage", None)
        elif kind == "message_delta":
            self.delta_usage = getattr(chunk, "usage", None)
            reason = fields.text(getattr(getattr(chunk, "delta", None), "stop_reason", None))
            if reason:
                call.finish_reasons = (reason,)
        elif kind == "message_stop":
            self.stopped = True
        elif kind == "message":  # the SDK's accumulated snapshot (messages.stream())
            self.snapshot = chunk

    def finish(self, call: LLMCall) -> None:
        if self.snapshot is not None:
            self.endpoint.read_response(call, self.snapshot)
            complete = call.finish_reasons != ()
        else:
            call.usage = _streamed_usage(self.start_usage, self.delta_usage)
            # The final count is the last message_delta's: without a readable one ("seven", a
            # float, none at all) the start's placeholder is not the output, so it is estimated.
            complete = self.stopped and fields.count(getattr(self.delta_usage, "output_tokens", None)) is not None
        if call.usage is not None and not complete:
            # The provider never sent its final count: what we have is a lower bound.
            counted = estimate_output_tokens(self.text(), call.model) if self.parts else 0
            call.usage = replace(call.usage, output_tokens=max(call.usage.output_tokens, counted), source="estimated")

    def text(self) -> str:
        if not self.parts and self.snapshot is not None:
            return self.endpoint.output_text(self.snapshot)  # messages.stream(): only the snapshot is seen
        return "".join(self.parts)


def messages_usage(usage: Any) -> Usage | None:
    """Anthropic usage in semantic-convention terms; ``None`` when it is unusable."""
    uncached = fields.count(getattr(usage, "input_tokens", None))
    output = fields.count(getattr(usage, "output_tokens", None))
    if uncached is None or output is None:
        return None
    cache_read = fields.count(getattr(usage, "cache_read_input_tokens", None)) or 0
    cache_write = fields.count(getattr(usage, "cache_creation_input_tokens", None)) or 0
    return Usage(
        input_tokens=uncached + cache_read + cache_write,
        output_tokens=output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=min(_one_hour_writes(usage) or 0, cache_write),
    )


def _streamed_usage(start: Any, delta: Any) -> Usage | None:
    usage = messages_usage(start)
    if usage is None:
        return None
    if delta is None:
        return usage
    # message_delta counts are cumulative; newer API versions repeat the input counts there.
    output = fields.count(getattr(delta, "output_tokens", None))
    merged = messages_usage(delta) if fields.count(getattr(delta, "input_tokens", None)) is not None else None
    if merged is not None:
        if _one_hour_writes(delta) is None:  # the delta repeats totals only; the TTL split is the start's
            merged = replace(merged, cache_write_1h_tokens=min(usage.cache_write_1h_tokens, merged.cache_write_tokens))
        return merged
    return usage if output is None else replace(usage, output_tokens=output)


def _one_hour_writes(usage: Any) -> int | None:
    """``cache_creation.ephemeral_1h_input_tokens`` (a model, or a dict where the SDK does not type it)."""
    return fields.count(fields.get(fields.get(usage, "cache_creation"), "ephemeral_1h_input_tokens"))

