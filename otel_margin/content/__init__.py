"""Opt-in message content on spans, shaped as the GenAI semantic conventions say.

With ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` on, a chat call's span carries
``gen_ai.system_instructions`` (instructions given apart from the history: Anthropic's
``system``, the Responses API's ``instructions``), ``gen_ai.input.messages`` and
``gen_ai.output.messages``, as JSON text (structured values are not yet supported on spans;
the conventions then ask for JSON strings): messages of ``role`` and ``parts`` — ``text``,
``tool_call``, ``tool_call_response``, ``reasoning``, ``blob`` / ``uri`` / ``file``, or the
provider's own part type with its fields — and, on output messages, a ``finish_reason``.
Streams included: the output is assembled from the chunks. Embeddings carry no content.

Each value is at most ``OTEL_MARGIN_CAPTURE_MESSAGE_MAX_BYTES`` bytes of UTF-8 and always valid
JSON (:mod:`otel_margin.content.capped`); ``margin.content.truncated`` names the attributes
that were cut to fit.

Where the work runs: on the caller's thread, only a copy of the request's message lists
(callers append the reply to their list as soon as the call returns) and, for streams whose
chunks are read there, collecting the text pieces; reading the request, turning the reply
into messages, JSON and the cap run where the call is finished (the finisher thread). Off,
none of this runs.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Mapping

from otel_margin import attributes as attr
from otel_margin.call import LLMCall
from otel_margin.content import anthropic, openai
from otel_margin.content.capped import encode
from otel_margin.environment_variables import (
    OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT,
    OTEL_MARGIN_CAPTURE_MESSAGE_MAX_BYTES,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 32_768
"""Default cap of each content attribute, in UTF-8 bytes."""

MIN_MAX_BYTES = 64
"""The smallest cap accepted: below it hardly a message fits."""

_ON = frozenset(("true", "1", "yes", "on", "span_only", "span_and_event"))
_OFF = frozenset(("false", "0", "no", "off", "no_content"))
_KEY = "content"
"""Key of the call's :class:`_Capture` in ``LLMCall.notes``."""

_REQUEST_KEYS = ("messages", "system", "input", "instructions")


def capture_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether content goes on spans: ``true`` / ``SPAN_ONLY`` / ``SPAN_AND_EVENT`` (any case). Default off.

    ``SPAN_AND_EVENT`` records it on spans only (otel-margin emits no events); ``EVENT_ONLY``
    records none, with a warning.
    """
    name = OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return False
    value = raw.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    if value == "event_only":
        _warn_once(f"otel-margin: {name}={raw!r}: otel-margin records message content on spans only, so none "
                   "is recorded; set it to SPAN_ONLY (or true) to record content on spans")
    else:
        _warn_once(f"otel-margin: {name}={raw!r} is not one of true, false, SPAN_ONLY, SPAN_AND_EVENT, "
                   "EVENT_ONLY, NO_CONTENT; message content is not captured")
    return False


def max_bytes(environ: Mapping[str, str] = os.environ) -> int:
    """The cap of each content attribute in bytes (``OTEL_MARGIN_CAPTURE_MESSAGE_MAX_BYTES``)."""
    name = OTEL_MARGIN_CAPTURE_MESSAGE_MAX_BYTES
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_BYTES
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value < MIN_MAX_BYTES:
        _warn_once(f"otel-margin: {name}={raw!r} is not a whole number of bytes of at least {MIN_MAX_BYTES}; "
                   f"using {DEFAULT_MAX_BYTES}")
        return DEFAULT_MAX_BYTES
    return value


class _Capture:
    __slots__ = ("request", "max_bytes", "stream")

    def __init__(self, request: dict[str, Any], cap: int) -> None:
        self.request = request
        self.max_bytes = cap
        self.stream: Any = None


def start(call: LLMCall, cap: int) -> None:
    """On the caller's thread, as the request leaves: keep what it sends, for the span. Never raises."""
    if call.api not in _APIS:
        return  # embeddings: no content (and their input lists can be long)
    params = call.params
    request = {}
    for key in _REQUEST_KEYS:
        value = params.get(key)
        if value is not None:
            # A copy of the list, not of the messages: the caller may append the reply to it
            # as soon as the call returns, before the span is written.
            request[key] = list(value) if type(value) is list else value
    call.notes[_KEY] = _Capture(request, cap)


def feed(call: LLMCall, chunks: list[Any]) -> None:
    """Read a stream's next chunks (as the stream observer gets them) into its output."""
    capture = call.notes.get(_KEY)
    if capture is None:
        return
    stream = capture.stream
    if stream is None:
        api = _APIS.get(call.api)
        if api is None:
            return
        stream = capture.stream = api[2]()
    add = stream.add
    for chunk in chunks:
        add(chunk)


def span_attributes(call: LLMCall, response: Any) -> dict[str, Any]:
    """The content attributes of a finished call (``{}`` when not captured), each capped JSON text."""
    capture = call.notes.get(_KEY)
    api = _APIS.get(call.api)
    if capture is None or api is None:
        return {}
    read_request, read_output, _ = api
    system, inputs = read_request(capture.request)
    if capture.stream is not None:
        outputs = capture.stream.messages(call.error_type)
    elif call.stream:
        outputs = []  # a stream that ended before its first chunk
    else:
        outputs = read_output(response, call.error_type)
    values: dict[str, Any] = {}
    truncated = []
    for name, messages in ((attr.GEN_AI_SYSTEM_INSTRUCTIONS, system), (attr.GEN_AI_INPUT_MESSAGES, inputs),
                           (attr.GEN_AI_OUTPUT_MESSAGES, outputs)):
        if messages:
            values[name], cut = encode(messages, capture.max_bytes)
            if cut:
                truncated.append(name)
    if truncated:
        values[attr.MARGIN_CONTENT_TRUNCATED] = truncated
    return values


_APIS: dict[str, tuple[Callable[[dict[str, Any]], tuple[list[Any], list[Any]]],
                       Callable[[Any, str | None], list[Any]], Callable[[], Any]]] = {
    "chat.completions": (openai.chat_request, openai.chat_output, openai.ChatStream),
    "responses": (openai.responses_request, openai.responses_output, openai.ResponsesStream),
    "messages": (anthropic.request, anthropic.output, anthropic.MessagesStream),
}
"""Per SDK surface (``LLMCall.api``): read the request, read a complete reply, assemble a stream."""

_warned: set[str] = set()


def _warn_once(message: str) -> None:
    # Each instrumentor reads the settings: say it once per process.
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)
