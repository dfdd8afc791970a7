"""``AnthropicMarginInstrumentor``: otel-margin for the ``anthropic`` SDK.

Patched, sync and async: ``messages.create`` (streaming or not; ``with_raw_response`` and
``with_streaming_response`` included) and ``messages.stream`` (a lazy manager; the async
one is a sync method returning an async context manager). Recent SDKs open their own
``anthropic.messages.create`` span; inside one of our calls it is not opened, so a call
yields one LLM span.
"""

from __future__ import annotations

from otel_margin.instrumentation import Patch, PatchingInstrumentor
from otel_margin.instrumentation.anthropic.package import _instruments

_MESSAGES = "anthropic.resources.messages.messages"
_BASE_CLIENT = "anthropic._base_client"


class AnthropicMarginInstrumentor(PatchingInstrumentor):
    """Instruments the Anthropic SDK with tokens, exact cost, attribution and guardrails."""

    _instruments = _instruments
    sdk = "anthropic"
    modules = (_MESSAGES, _BASE_CLIENT)

    def patches(self) -> list[Patch]:
        # Here, not at the top: the pipeline loads with the SDK (otel_margin.instrumentation).
        from otel_margin.instrumentation.anthropic.endpoints import Messages, MessagesStream
        from otel_margin.pipeline import manager_wrapper, quiet_inside_calls

        messages, stream = Messages(), MessagesStream()
        return [
            Patch(_MESSAGES, "Messages.create", messages),
            Patch(_MESSAGES, "AsyncMessages.create", messages, is_async=True),
            Patch(_MESSAGES, "Messages.stream", stream, factory=lambda s: manager_wrapper(stream, s)),
            Patch(_MESSAGES, "AsyncMessages.stream", stream, factory=lambda s: manager_wrapper(stream, s)),
            # The SDK's self-tracing (anthropic >= 2.x); absent in older versions.
            Patch(_BASE_CLIENT, "start_api_call_span", factory=lambda s: quiet_inside_calls),
        ]


__all__ = ["AnthropicMarginInstrumentor"]
