"""A local stand-in for the OpenAI and Anthropic HTTP APIs, for the demo, tests and benchmarks.

The real ``openai`` and ``anthropic`` SDKs work against it unmodified, either over a loopback
socket (:class:`StandInServer`) or with no socket at all (:func:`in_process_transport`)::

    with StandInServer() as server:
        client = openai_client(server)            # or openai.OpenAI(base_url=server.openai_base_url)
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        server.requests[-1].json                  # what the SDK sent

Endpoints: OpenAI ``/v1/chat/completions``, ``/v1/responses``, ``/v1/embeddings``; Anthropic
``/v1/messages``, ``/v1/messages/count_tokens``. Bodies have the providers' real shapes; token
numbers follow the documented rule in :mod:`otel_margin.standin.tokens` (and the provider
modules' docstrings), so tests can assert exact numbers.

Scenarios, asked for with the request header ``x-standin-scenario`` (comma-separated; through
an SDK use ``extra_headers=``):

``tools``              call the first function tool the request offers (``tool_calls`` /
                       ``function_call`` / ``tool_use``, streamed as argument deltas too)
``reasoning``          OpenAI: ``reasoning_tokens`` > 0 (half the output); Anthropic: a thinking block
``cached``             OpenAI: ``cached_tokens`` = half the prompt tokens
``error-400|429|500|529``  the provider's error JSON and status (OpenAI answers 529 as 503)
``no-usage``           no usage at all (OpenAI streams then have no usage chunk)
``null-usage-fields``  a usage object whose detail fields are ``null``
``cut-stream``         the reply stops half-way (no final event / ``[DONE]``) and the connection drops
``malformed``          a 200 whose JSON lacks ``choices`` / ``output`` / ``data`` / ``content``
``slow``               a first-byte delay and a small per-chunk delay (bounded to about a second)

``x-standin-output-tokens: N`` forces the output to N tokens: usage reports exactly N and the
text has N words (fewer when part of them are reasoning / thinking, see the provider modules).
``x-standin-usage: {JSON object}`` replaces those fields of every usage the reply carries (the
body's, a stream's usage chunk or final event, Anthropic's ``message_start`` and the
``message_delta`` output count), with any JSON value: ``{"prompt_tokens": 1e30}``,
``{"output_tokens": "seven"}``.
An unknown scenario or a bad N is answered with a 400 naming the value.
"""

from otel_margin.standin.core import RecordedRequest, StandIn
from otel_margin.standin.server import StandInServer
from otel_margin.standin.transport import (
    anthropic_client,
    in_process_transport,
    openai_client,
    sdk_http_module,
)
from otel_margin.standin.wire import (
    OUTPUT_TOKENS_HEADER,
    SCENARIO_HEADER,
    SCENARIOS,
    USAGE_HEADER,
    Scenario,
    ScenarioError,
    StandInResponse,
)

__all__ = [
    "OUTPUT_TOKENS_HEADER",
    "SCENARIO_HEADER",
    "SCENARIOS",
    "USAGE_HEADER",
    "RecordedRequest",
    "Scenario",
    "ScenarioError",
    "StandIn",
    "StandInResponse",
    "StandInServer",
    "anthropic_client",
    "in_process_transport",
    "openai_client",
    "sdk_http_module",
]
