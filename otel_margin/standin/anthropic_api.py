"""The Anthropic side of the stand-in: messages (plain and streamed), count_tokens, errors.

Bodies follow what api.anthropic.com sends. Token numbers follow
:mod:`otel_margin.standin.tokens`, over the request read in Anthropic's cache order — tools, then
system blocks, then each message's content blocks (a message's ``MESSAGE_OVERHEAD`` rides on
its first block):

* total input = ``PROMPT_OVERHEAD`` + the tokens of every such unit;
* prompt caching: a unit carrying ``cache_control`` ends a cacheable prefix. The longest prefix
  this instance has already seen (same model) is read from cache, the rest up to the last
  breakpoint is written (``cache_creation``, split by each breakpoint's ``ttl``), and
  ``input_tokens`` excludes both, exactly as Anthropic reports it. There is no minimum length.
* output tokens: ``x-standin-output-tokens`` or ``DEFAULT_OUTPUT_TOKENS``, capped by
  ``max_tokens`` (stop reason ``max_tokens``); with thinking, half of them (rounded down) are the
  thinking block's words. A stream's ``message_start`` reports 1 output token and the
  ``message_delta`` the real cumulative count — never their sum.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from otel_margin.standin.tokens import (
    MESSAGE_OVERHEAD,
    PROMPT_OVERHEAD,
    arguments_for,
    count_value,
    fingerprint,
    json_pieces,
    split_deltas,
    text_deltas,
)
from otel_margin.standin.wire import (
    StandInRequest,
    StandInResponse,
    json_response,
    output_budget,
    sse,
    stream_response,
)

MODEL_ALIASES = {
    "claude-3-5-sonnet-latest": "claude-3-5-sonnet-20241022",
    "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
    "claude-3-7-sonnet-latest": "claude-3-7-sonnet-20250219",
    "claude-sonnet-4-0": "claude-sonnet-4-20250514",
    "claude-opus-4-0": "claude-opus-4-20250514",
    "claude-opus-4-1": "claude-opus-4-1-20250805",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
}
"""Aliases Anthropic resolves to a dated model id in the response ``model``."""

_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass(frozen=True, slots=True)
class CacheUse:
    """What one request read from and wrote to the prompt cache, in tokens."""

    read: int = 0
    created_5m: int = 0
    created_1h: int = 0

    @property
    def created(self) -> int:
        """All cache-write tokens, whatever their time to live."""
        return self.created_5m + self.created_1h


class PromptCache:
    """The prefixes one stand-in has seen, so repeats are cache reads (thread-safe)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def use(self, breakpoints: list[tuple[str, int, str]]) -> CacheUse:
        """Record a request's breakpoints ``(prefix hash, prefix tokens, ttl)``, in order."""
        if not breakpoints:
            return CacheUse()
        with self._lock:
            hit = max((i for i, (key, _, _) in enumerate(breakpoints) if key in self._seen), default=-1)
            self._seen.update(key for key, _, _ in breakpoints)
        read = breakpoints[hit][1] if hit >= 0 else 0
        created = {"5m": 0, "1h": 0}
        previous = read
        for _, tokens, ttl in breakpoints[hit + 1 :]:
            created["1h" if ttl == "1h" else "5m"] += tokens - previous
            previous = tokens
        return CacheUse(read=read, created_5m=created["5m"], created_1h=created["1h"])


class AnthropicAPI:
    """Answers Anthropic requests; holds the prompt cache of one stand-in instance."""

    def __init__(self) -> None:
        self.cache = PromptCache()
        self.routes: dict[str, Callable[[StandInRequest], StandInResponse]] = {
            "/v1/messages": self.messages,
            "/v1/messages/count_tokens": self.count_tokens,
        }

    # --- errors ------------------------------------------------------------------------------

    def error(self, request: StandInRequest, status: int, message: str, param: str | None = None) -> StandInResponse:
        """Return Anthropic's error JSON (``{"type": "error", "error": {type, message}}``)."""
        request_id = _request_id(request)
        payload = {
            "type": "error",
            "error": {"type": _ERRORS.get(status, "api_error"), "message": message},
            "request_id": request_id,
        }
        headers = {"request-id": request_id, "anthropic-organization-id": "standin-org"}
        if status == 429:
            headers.update({"retry-after-ms": "20", "retry-after": "1"})
        return json_response(None, status, payload, headers)

    def scenario_error(self, request: StandInRequest, status: int) -> StandInResponse:
        """Return the error a provider really sends for an ``error-NNN`` scenario."""
        messages = {
            400: "messages: the stand-in was asked to reject this request (scenario error-400)",
            429: "Number of request tokens has exceeded your per-minute rate limit "
            "(https://docs.anthropic.com/en/api/rate-limits); see the response headers for current usage.",
            500: "Internal server error",
            529: "Overloaded",
        }
        return self.error(request, status, messages[status])

    # --- endpoints ---------------------------------------------------------------------------

    def messages(self, request: StandInRequest) -> StandInResponse:
        """Answer ``POST /v1/messages`` (non-stream or SSE)."""
        problem = self._invalid(request, require_max_tokens=True)
        if problem is not None:
            return problem
        body = request.json
        model = MODEL_ALIASES.get(body["model"], body["model"])
        units = _units(body)
        total = PROMPT_OVERHEAD + sum(tokens for tokens, _, _ in units)
        cache = self.cache.use(_breakpoints(model, units))
        out, capped = output_budget(request, body["max_tokens"])
        thinking = out // 2 if _wants_thinking(request) else 0
        tool = _tool_to_call(request)
        blocks = _content(request, model, out - thinking, thinking, tool)
        stop_reason = "tool_use" if tool is not None else ("max_tokens" if capped else "end_turn")
        usage = _usage(request, total - cache.read - cache.created, cache, out)
        message: dict[str, Any] = {
            "id": request.new_id("msg_01", 22),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        if usage is None:
            del message["usage"]
        if "malformed" in request.scenario:
            del message["content"]
        headers = {"request-id": _request_id(request), "anthropic-organization-id": "standin-org"}
        if not request.stream:
            return json_response(request, 200, message, headers)
        return stream_response(request, _stream(message, blocks, stop_reason, out), headers)

    def count_tokens(self, request: StandInRequest) -> StandInResponse:
        """Answer ``POST /v1/messages/count_tokens`` with the full input (no cache split)."""
        problem = self._invalid(request, require_max_tokens=False)
        if problem is not None:
            return problem
        total = PROMPT_OVERHEAD + sum(tokens for tokens, _, _ in _units(request.json))
        headers = {"request-id": _request_id(request), "anthropic-organization-id": "standin-org"}
        return json_response(request, 200, {"input_tokens": total}, headers)

    def _invalid(self, request: StandInRequest, *, require_max_tokens: bool) -> StandInResponse | None:
        body = request.json
        required = [("model", str), ("messages", list)] + ([("max_tokens", int)] if require_max_tokens else [])
        for name, kind in required:
            if name not in body:
                return self.error(request, 400, f"{name}: Field required")
            value = body[name]
            if not isinstance(value, kind) or isinstance(value, bool) or (isinstance(value, (str, list)) and not value):
                return self.error(request, 400, f"{name}: Input should be a valid {kind.__name__} and not empty")
        if require_max_tokens and body["max_tokens"] < 1:
            return self.error(request, 400, "max_tokens: Input should be greater than or equal to 1")
        if not all(isinstance(m, dict) for m in body["messages"]):
            return self.error(request, 400, "messages.0: Input should be a valid dictionary")
        return None


# --- token units and caching -------------------------------------------------------------------


def _units(body: dict[str, Any]) -> list[tuple[int, Any, Any]]:
    """Return the request as ``(tokens, cache_control, unit)`` in Anthropic's cache order."""
    units: list[tuple[int, Any, Any]] = []
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        units.append((count_value(tool), tool.get("cache_control") if isinstance(tool, dict) else None, tool))
    system = body.get("system")
    for block in [system] if isinstance(system, str) else system if isinstance(system, list) else []:
        units.append((count_value(block), block.get("cache_control") if isinstance(block, dict) else None, block))
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        blocks = [content] if not isinstance(content, list) else content or [None]
        for index, block in enumerate(blocks):
            overhead = MESSAGE_OVERHEAD if index == 0 else 0
            control = block.get("cache_control") if isinstance(block, dict) else None
            units.append((overhead + count_value(block), control, [message.get("role"), block]))
    return units


def _breakpoints(model: str, units: list[tuple[int, Any, Any]]) -> list[tuple[str, int, str]]:
    breakpoints = []
    tokens = 0
    for index, (unit_tokens, control, _) in enumerate(units):
        tokens += unit_tokens
        if isinstance(control, dict):
            prefix = [unit for _, _, unit in units[: index + 1]]
            breakpoints.append((fingerprint(model, prefix), tokens, str(control.get("ttl", "5m"))))
    return breakpoints


def _usage(request: StandInRequest, input_tokens: int, cache: CacheUse, out: int) -> dict[str, Any] | None:
    if "no-usage" in request.scenario:
        return None
    usage: dict[str, Any] = {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache.created,
        "cache_read_input_tokens": cache.read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache.created_5m,
            "ephemeral_1h_input_tokens": cache.created_1h,
        },
        "output_tokens": out,
        "service_tier": "standard",
    }
    if "null-usage-fields" in request.scenario:
        usage.update(
            cache_creation_input_tokens=None, cache_read_input_tokens=None, cache_creation=None, service_tier=None
        )
    return request.scenario.usage_over(usage)


# --- content -----------------------------------------------------------------------------------


def _wants_thinking(request: StandInRequest) -> bool:
    thinking = request.json.get("thinking")
    enabled = isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
    return enabled or "reasoning" in request.scenario


def _tool_to_call(request: StandInRequest) -> dict[str, Any] | None:
    tools = request.json.get("tools")
    choice = request.json.get("tool_choice")
    if "tools" not in request.scenario or not isinstance(tools, list):
        return None
    if isinstance(choice, dict) and choice.get("type") == "none":
        return None
    custom = [
        t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str) and t.get("type", "custom") == "custom"
    ]
    wanted = choice.get("name") if isinstance(choice, dict) and choice.get("type") == "tool" else None
    return next((t for t in custom if t["name"] == wanted), custom[0] if custom else None)


def _content(
    request: StandInRequest, model: str, visible: int, thinking: int, tool: dict[str, Any] | None
) -> list[dict[str, Any]]:
    seed = fingerprint(model, request.json.get("system"), request.json.get("messages"))
    blocks: list[dict[str, Any]] = []
    if thinking:
        signature = base64.b64encode(hashlib.sha512(seed.encode()).digest()).decode()
        blocks.append({"type": "thinking", "thinking": "".join(text_deltas(seed + ":thinking", thinking)),
                       "signature": signature})
    if tool is not None:
        blocks.append({"type": "tool_use", "id": request.new_id("toolu_01", 22), "name": tool["name"],
                       "input": arguments_for(tool.get("input_schema"))})
    elif visible:
        blocks.append({"type": "text", "text": "".join(text_deltas(seed, visible))})
    return blocks


def _stream(message: dict[str, Any], blocks: list[dict[str, Any]], stop_reason: str, out: int) -> list[bytes]:
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    if "content" not in message:
        del start["content"]
    if "usage" in message:
        # Anthropic's message_start carries a placeholder output count; the real one comes last.
        start["usage"] = {**message["usage"], "output_tokens": 1}
    events = [sse({"type": "message_start", "message": start}, event="message_start")]
    for index, block in enumerate(blocks):
        opening = {"text": {"type": "text", "text": ""},
                   "thinking": {"type": "thinking", "thinking": "", "signature": ""},
                   "tool_use": {**block, "input": {}}}[block["type"]]
        events.append(sse({"type": "content_block_start", "index": index, "content_block": opening},
                          event="content_block_start"))
        if index == 0:
            events.append(sse({"type": "ping"}, event="ping"))
        for delta in _block_deltas(block):
            events.append(sse({"type": "content_block_delta", "index": index, "delta": delta},
                              event="content_block_delta"))
        events.append(sse({"type": "content_block_stop", "index": index}, event="content_block_stop"))
    delta: dict[str, Any] = {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}}
    if "usage" in message:
        delta["usage"] = {"output_tokens": message["usage"]["output_tokens"]}  # ``out``, unless replaced
    events.append(sse(delta, event="message_delta"))
    events.append(sse({"type": "message_stop"}, event="message_stop"))
    return events


def _block_deltas(block: dict[str, Any]) -> list[dict[str, Any]]:
    if block["type"] == "text":
        return [{"type": "text_delta", "text": piece} for piece in split_deltas(block["text"])]
    if block["type"] == "thinking":
        deltas = [{"type": "thinking_delta", "thinking": piece} for piece in split_deltas(block["thinking"])]
        return deltas + [{"type": "signature_delta", "signature": block["signature"]}]
    arguments = json.dumps(block["input"])
    return [{"type": "input_json_delta", "partial_json": ""}] + [
        {"type": "input_json_delta", "partial_json": piece} for piece in json_pieces(arguments)
    ]


def _request_id(request: StandInRequest) -> str:
    return request.new_id("req_011C", 20, label="request-id")
