"""The OpenAI side of the stand-in: chat completions, the Responses API, embeddings, errors.

The routes answer at OpenAI's paths and at the paths of OpenAI-compatible providers (Azure
OpenAI's deployments, DeepSeek, Groq, ...: :class:`CompatibleRoutes`).

Bodies follow what api.openai.com sends (field names, ``object`` tags, ``system_fingerprint``,
``service_tier``, usage details); token numbers follow :mod:`otel_margin.standin.tokens`:

* input tokens: ``PROMPT_OVERHEAD`` + per message ``MESSAGE_OVERHEAD`` + ``count_value(message)``
  (Responses: per input item; a string ``input`` is one message) + ``count_value`` of
  ``instructions`` and of each tool;
* output tokens per choice: ``x-standin-output-tokens`` or ``DEFAULT_OUTPUT_TOKENS``, capped by
  ``max_completion_tokens`` / ``max_tokens`` / ``max_output_tokens`` (then finish reason
  ``length`` / status ``incomplete``); with reasoning, half of them (rounded down) are reasoning
  tokens and the visible text has the other half as words;
* ``cached``: ``cached_tokens`` = half the prompt tokens (rounded down), included in the prompt
  tokens as OpenAI does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Callable
from typing import Any

from otel_margin.standin.tokens import (
    MESSAGE_OVERHEAD,
    PROMPT_OVERHEAD,
    arguments_for,
    count_text,
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

MODEL_SNAPSHOTS = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "gpt-4-turbo": "gpt-4-turbo-2024-04-09",
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
    "gpt-5": "gpt-5-2025-08-07",
    "gpt-5-mini": "gpt-5-mini-2025-08-07",
    "gpt-5-nano": "gpt-5-nano-2025-08-07",
    "o1": "o1-2024-12-17",
    "o3": "o3-2025-04-16",
    "o3-mini": "o3-mini-2025-01-31",
    "o4-mini": "o4-mini-2025-04-16",
}
"""Aliases OpenAI answers with a dated snapshot in the response ``model``."""

EMBEDDING_DIMENSIONS = {"text-embedding-3-large": 3072, "text-embedding-3-small": 1536, "text-embedding-ada-002": 1536}
"""Native vector sizes; other embedding models get 1536 unless ``dimensions`` is sent."""

_ERRORS = {
    400: ("invalid_request_error", None),
    404: ("invalid_request_error", None),
    429: ("tokens", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}


class OpenAIAPI:
    """Answers OpenAI requests; stateless, so one instance serves every thread."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[StandInRequest], StandInResponse]] = CompatibleRoutes({
            "/v1/chat/completions": self.chat_completions,
            "/v1/responses": self.responses,
            "/v1/embeddings": self.embeddings,
        })

    # --- errors ------------------------------------------------------------------------------

    def error(self, request: StandInRequest, status: int, message: str, param: str | None = None) -> StandInResponse:
        """Return OpenAI's error JSON (``{"error": {message, type, param, code}}``) with ``status``."""
        kind, code = _ERRORS.get(status, ("server_error", None))
        payload = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        headers = _headers(request)
        if status == 429:
            # retry-after-ms is honoured by the SDK before retry-after; keeps retrying tests fast.
            headers.update({"retry-after-ms": "20", "retry-after": "1"})
        return json_response(None, status, payload, headers)

    def scenario_error(self, request: StandInRequest, status: int) -> StandInResponse:
        """Return the error a provider really sends for an ``error-NNN`` scenario."""
        model = request.json.get("model", "gpt-4o-mini")
        messages = {
            400: ("Invalid 'messages': the stand-in was asked to reject this request (scenario error-400).", "messages"),
            429: (
                f"Rate limit reached for {model} in organization org-standin on tokens per min (TPM): "
                "Limit 30000, Used 30000, Requested 20. Please try again in 20ms.",
                None,
            ),
            500: ("The server had an error while processing your request. Sorry about that!", None),
            529: ("The engine is currently overloaded, please try again later.", None),
        }
        message, param = messages[status]
        return self.error(request, 503 if status == 529 else status, message, param)

    # --- chat completions --------------------------------------------------------------------

    def chat_completions(self, request: StandInRequest) -> StandInResponse:
        """Answer ``POST /v1/chat/completions`` (non-stream or SSE)."""
        body = request.json
        problem = _missing(self, request, ("model", str), ("messages", list))
        if problem is not None:
            return problem
        n = body.get("n") if body.get("n") is not None else 1
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128:
            return self.error(request, 400, f"Invalid 'n': integer between 1 and 128 expected, got {n!r}.", "n")
        model = snapshot_model(body["model"])
        prompt = PROMPT_OVERHEAD + sum(MESSAGE_OVERHEAD + count_value(m) for m in body["messages"])
        prompt += count_value(body.get("tools") or [])
        out, capped = output_budget(request, body.get("max_completion_tokens") or body.get("max_tokens"))
        reasoning = out // 2 if _wants_reasoning(request, body.get("reasoning_effort")) else 0
        tool = _tool_to_call(request, body.get("tools"), body.get("tool_choice"), chat_format=True)
        choices = [_chat_choice(request, model, index, out - reasoning, capped, tool) for index in range(n)]
        usage = _chat_usage(request, prompt, n * out, n * reasoning)
        base = {
            "id": request.new_id("chatcmpl-", 29),
            "object": "chat.completion",
            "created": request.created,
            "model": model,
        }
        tail = {"service_tier": "default", "system_fingerprint": _system_fingerprint(model)}
        if request.stream:
            return stream_response(request, _chat_stream(request, base, tail, choices, usage), _headers(request))
        payload: dict[str, Any] = {**base, "choices": [c["final"] for c in choices]}
        if usage is not None:
            payload["usage"] = usage
        payload.update(tail)
        if "malformed" in request.scenario:
            del payload["choices"]
        return json_response(request, 200, payload, _headers(request))

    # --- responses API -----------------------------------------------------------------------

    def responses(self, request: StandInRequest) -> StandInResponse:
        """Answer ``POST /v1/responses`` (non-stream or typed SSE events)."""
        body = request.json
        problem = _missing(self, request, ("model", str), ("input", (str, list)))
        if problem is not None:
            return problem
        model = snapshot_model(body["model"])
        items = body["input"] if isinstance(body["input"], list) else [body["input"]]
        prompt = PROMPT_OVERHEAD + sum(MESSAGE_OVERHEAD + count_value(item) for item in items)
        prompt += count_value(body.get("instructions")) + count_value(body.get("tools") or [])
        out, capped = output_budget(request, body.get("max_output_tokens"))
        effort = body.get("reasoning", {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
        reasoning = out // 2 if _wants_reasoning(request, effort) else 0
        tool = _tool_to_call(request, body.get("tools"), body.get("tool_choice"), chat_format=False)
        output = _response_output(request, model, out - reasoning, reasoning, capped, tool)
        usage = _response_usage(request, prompt, out, reasoning)
        final = _response_object(request, model, "incomplete" if capped else "completed", output, usage)
        if "malformed" in request.scenario:
            del final["output"]
        if not request.stream:
            return json_response(request, 200, final, _headers(request))
        return stream_response(request, _response_stream(request, model, output, final), _headers(request))

    # --- embeddings --------------------------------------------------------------------------

    def embeddings(self, request: StandInRequest) -> StandInResponse:
        """Answer ``POST /v1/embeddings`` with deterministic unit vectors (float or base64)."""
        body = request.json
        problem = _missing(self, request, ("model", str), ("input", (str, list)))
        if problem is not None:
            return problem
        raw = body["input"]
        inputs = [raw] if isinstance(raw, str) or (raw and all(isinstance(t, int) for t in raw)) else raw
        if not inputs or not all(isinstance(i, (str, list)) for i in inputs):
            return self.error(request, 400, "'$.input' is invalid. Please check the API reference.", "input")
        dimensions = body.get("dimensions") or EMBEDDING_DIMENSIONS.get(body["model"], 1536)
        if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= 8192:
            return self.error(request, 400, f"Invalid 'dimensions': {dimensions!r}.", "dimensions")
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(inputs):
            vector = embedding_vector(body["model"], item, dimensions)
            packed = struct.pack(f"<{dimensions}f", *vector)
            encoded: Any = base64.b64encode(packed).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(count_text(i) if isinstance(i, str) else len(i) for i in inputs)
        payload: dict[str, Any] = {"object": "list", "data": data, "model": body["model"]}
        if "no-usage" not in request.scenario:
            payload["usage"] = request.scenario.usage_over({"prompt_tokens": tokens, "total_tokens": tokens})
        if "malformed" in request.scenario:
            del payload["data"]
        return json_response(request, 200, payload, _headers(request))


def snapshot_model(model: str) -> str:
    """Return the dated snapshot OpenAI reports for ``model``, or ``model`` itself."""
    return MODEL_SNAPSHOTS.get(model, model)


def embedding_vector(model: str, item: str | list[int], dimensions: int) -> list[float]:
    """Return a deterministic unit vector (float32 values) for one embedding input."""
    seed = fingerprint(model, item)
    raw: list[float] = []
    block = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(f"{seed}:{block}".encode()).digest()
        raw.extend((int.from_bytes(digest[i : i + 2], "big") / 32767.5) - 1.0 for i in range(0, 32, 2))
        block += 1
    raw = raw[:dimensions]
    norm = sum(v * v for v in raw) ** 0.5 or 1.0
    # Round-trip through float32 so the float and base64 encodings carry the same numbers.
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(v / norm for v in raw))))


class CompatibleRoutes(dict):
    """OpenAI's routes, also found under the paths OpenAI-compatible providers serve them at.

    ``/v1/chat/completions`` is also ``/chat/completions`` (DeepSeek, Perplexity),
    ``/openai/v1/chat/completions`` (Groq), ``/inference/v1/...`` (Fireworks),
    ``/api/v1/...`` (OpenRouter) and Azure OpenAI's
    ``/openai/deployments/{deployment}/chat/completions``: any path ending in an OpenAI
    route's last segments. The request body's ``model`` is answered, as everywhere.
    """

    def get(self, path: str, default: Any = None) -> Any:  # type: ignore[override]
        found = super().get(path)
        if found is not None:
            return found
        for route, endpoint in self.items():
            tail = route[len("/v1"):]
            if path.endswith(tail):
                return endpoint
        return default


# --- chat helpers ------------------------------------------------------------------------------


def _chat_choice(
    request: StandInRequest, model: str, index: int, visible: int, capped: bool, tool: dict[str, Any] | None
) -> dict[str, Any]:
    """Return a choice both ways: its non-stream ``final`` form and its stream ``deltas``."""
    if tool is not None:
        call_id = request.new_id("call_", 24, label=str(index))
        arguments = json.dumps(arguments_for(tool.get("parameters")))
        call = {"id": call_id, "type": "function", "function": {"name": tool["name"], "arguments": arguments}}
        message = {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None, "annotations": []}
        first = {"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": call_id, "type": "function", "function": {"name": tool["name"], "arguments": ""}}
        ], "refusal": None}
        deltas = [{"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in json_pieces(arguments)]
        reason = "tool_calls"
    else:
        pieces = text_deltas(fingerprint(model, request.json.get("messages"), index), visible)
        message = {"role": "assistant", "content": "".join(pieces), "refusal": None, "annotations": []}
        first = {"role": "assistant", "content": "", "refusal": None}
        deltas = [{"content": piece} for piece in pieces]
        reason = "length" if capped else "stop"
    final = {"index": index, "message": message, "logprobs": None, "finish_reason": reason}
    return {"final": final, "first": first, "deltas": deltas, "reason": reason}


def _chat_usage(request: StandInRequest, prompt: int, completion: int, reasoning: int) -> dict[str, Any] | None:
    if "no-usage" in request.scenario:
        return None
    cached = prompt // 2 if "cached" in request.scenario else 0
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    if "null-usage-fields" in request.scenario:
        usage["prompt_tokens_details"] = None
        usage["completion_tokens_details"] = None
    return request.scenario.usage_over(usage)


def _chat_stream(
    request: StandInRequest,
    base: dict[str, Any],
    tail: dict[str, Any],
    choices: list[dict[str, Any]],
    usage: dict[str, Any] | None,
) -> list[bytes]:
    options = request.json.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    malformed = "malformed" in request.scenario

    def chunk(choice_list: list[dict[str, Any]], chunk_usage: Any = None) -> bytes:
        data = {**base, "object": "chat.completion.chunk", **tail, "choices": choice_list}
        if malformed:
            del data["choices"]
        if include_usage:
            # With include_usage every chunk carries "usage": null, the extra last one the numbers.
            data["usage"] = chunk_usage
        return sse(data)

    def choice(index: int, delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}

    events = [chunk([choice(i, c["first"])]) for i, c in enumerate(choices)]
    for position in range(max(len(c["deltas"]) for c in choices)):
        for i, c in enumerate(choices):
            if position < len(c["deltas"]):
                events.append(chunk([choice(i, c["deltas"][position])]))
    events.extend(chunk([choice(i, {}, c["reason"])]) for i, c in enumerate(choices))
    if include_usage and usage is not None:
        events.append(chunk([], usage))
    events.append(sse("[DONE]"))
    return events


# --- responses helpers -------------------------------------------------------------------------


def _response_output(
    request: StandInRequest, model: str, visible: int, reasoning: int, capped: bool, tool: dict[str, Any] | None
) -> list[dict[str, Any]]:
    output: list[dict[str, Any]] = []
    if reasoning:
        output.append({"id": request.new_id("rs_", 40), "type": "reasoning", "summary": []})
    if tool is not None:
        output.append(
            {
                "id": request.new_id("fc_", 40),
                "type": "function_call",
                "status": "completed",
                "arguments": json.dumps(arguments_for(tool.get("parameters"))),
                "call_id": request.new_id("call_", 24),
                "name": tool["name"],
            }
        )
        return output
    text = "".join(text_deltas(fingerprint(model, request.json.get("input"), request.json.get("instructions")), visible))
    output.append(
        {
            "id": request.new_id("msg_", 40),
            "type": "message",
            "status": "incomplete" if capped else "completed",
            "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}],
            "role": "assistant",
        }
    )
    return output


def _response_usage(request: StandInRequest, prompt: int, out: int, reasoning: int) -> dict[str, Any] | None:
    if "no-usage" in request.scenario:
        return None
    cached = prompt // 2 if "cached" in request.scenario else 0
    usage: dict[str, Any] = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + out,
    }
    if "null-usage-fields" in request.scenario:
        usage["input_tokens_details"] = None
        usage["output_tokens_details"] = None
    return request.scenario.usage_over(usage)


def _response_object(
    request: StandInRequest, model: str, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None
) -> dict[str, Any]:
    body = request.json
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    done = status in ("completed", "incomplete")
    return {
        "id": request.new_id("resp_", 48),
        "object": "response",
        "created_at": request.created,
        "status": status,
        "background": False,
        "completed_at": request.created if done else None,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": None,
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_logprobs": 0,
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def _response_stream(
    request: StandInRequest, model: str, output: list[dict[str, Any]], final: dict[str, Any]
) -> list[bytes]:
    events: list[bytes] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append(sse({"type": kind, "sequence_number": len(events), **fields}, event=kind))

    opening = {**final, "status": "in_progress", "completed_at": None, "incomplete_details": None}
    opening.update(output=[], usage=None)
    emit("response.created", response=opening)
    emit("response.in_progress", response=opening)
    for index, item in enumerate(output):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            emit("response.output_item.added", output_index=index, item={**item, "status": "in_progress", "content": []})
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            emit("response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=part)
            for piece in split_deltas(text):
                emit("response.output_text.delta", item_id=item["id"], output_index=index, content_index=0,
                     delta=piece, logprobs=[])
            emit("response.output_text.done", item_id=item["id"], output_index=index, content_index=0, text=text,
                 logprobs=[])
            emit("response.content_part.done", item_id=item["id"], output_index=index, content_index=0,
                 part=item["content"][0])
        elif item["type"] == "function_call":
            emit("response.output_item.added", output_index=index,
                 item={**item, "status": "in_progress", "arguments": ""})
            for piece in json_pieces(item["arguments"]):
                emit("response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=piece)
            emit("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                 name=item["name"], arguments=item["arguments"])
        else:
            emit("response.output_item.added", output_index=index, item=item)
        emit("response.output_item.done", output_index=index, item=item)
    emit("response.incomplete" if final["status"] == "incomplete" else "response.completed", response=final)
    return events


# --- shared helpers ----------------------------------------------------------------------------


def _headers(request: StandInRequest) -> dict[str, str]:
    return {
        "x-request-id": request.new_id("req_", 32, label="request-id"),
        "openai-version": "2020-10-01",
        "openai-organization": "org-standin",
        "openai-processing-ms": "42",
    }


def _missing(api: OpenAIAPI, request: StandInRequest, *fields: tuple[str, Any]) -> StandInResponse | None:
    for name, kind in fields:
        value = request.json.get(name)
        if value is None:
            return api.error(request, 400, f"Missing required parameter: '{name}'.", name)
        if not isinstance(value, kind) or (isinstance(value, (str, list)) and not value):
            return api.error(request, 400, f"Invalid value for '{name}': {json.dumps(value)[:80]}.", name)
    return None


def _wants_reasoning(request: StandInRequest, effort: Any) -> bool:
    return "reasoning" in request.scenario or (isinstance(effort, str) and effort not in ("none", "minimal"))


def _tool_to_call(request: StandInRequest, tools: Any, choice: Any, *, chat_format: bool) -> dict[str, Any] | None:
    """Return ``{"name", "parameters"}`` of the function tool the ``tools`` scenario calls, if any."""
    if "tools" not in request.scenario or not isinstance(tools, list) or choice == "none":
        return None
    functions = []
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type") != "function":
            continue
        spec = tool.get("function") if chat_format else tool
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            functions.append({"name": spec["name"], "parameters": spec.get("parameters")})
    if not functions:
        return None
    wanted = None
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name") if chat_format else choice.get("name")
    return next((f for f in functions if f["name"] == wanted), functions[0])


def _system_fingerprint(model: str) -> str:
    return "fp_" + hashlib.sha256(model.encode()).hexdigest()[:10]
