"""``OpenAIMarginInstrumentor``: otel-margin for the ``openai`` SDK (2.x and 3.x).

Patched, sync and async: ``chat.completions.create`` / ``parse`` (``stream`` goes through
``create``), ``responses.create`` / ``parse`` (``stream`` goes through ``create``),
``embeddings.create``; ``with_raw_response`` and ``with_streaming_response`` go through the
same methods.
"""

from __future__ import annotations

from otel_margin.instrumentation import Patch, PatchingInstrumentor
from otel_margin.instrumentation.openai.package import _instruments

_CHAT = "openai.resources.chat.completions.completions"
_RESPONSES = "openai.resources.responses.responses"
_EMBEDDINGS = "openai.resources.embeddings"


class OpenAIMarginInstrumentor(PatchingInstrumentor):
    """Instruments the OpenAI SDK with tokens, exact cost, attribution and guardrails."""

    _instruments = _instruments
    sdk = "openai"
    modules = (_CHAT, _RESPONSES, _EMBEDDINGS)

    def patches(self) -> list[Patch]:
        # Here, not at the top: the pipeline loads with the SDK (otel_margin.instrumentation).
        from otel_margin.instrumentation.openai.endpoints import ChatCompletions, Embeddings, Responses

        chat, responses, embeddings = ChatCompletions(), Responses(), Embeddings()
        return [
            Patch(_CHAT, "Completions.create", chat),
            Patch(_CHAT, "Completions.parse", chat),
            Patch(_CHAT, "AsyncCompletions.create", chat, is_async=True),
            Patch(_CHAT, "AsyncCompletions.parse", chat, is_async=True),
            Patch(_RESPONSES, "Responses.create", responses),
            Patch(_RESPONSES, "Responses.parse", responses),
            Patch(_RESPONSES, "AsyncResponses.create", responses, is_async=True),
            Patch(_RESPONSES, "AsyncResponses.parse", responses, is_async=True),
            Patch(_EMBEDDINGS, "Embeddings.create", embeddings),
            Patch(_EMBEDDINGS, "AsyncEmbeddings.create", embeddings, is_async=True),
        ]


__all__ = ["OpenAIMarginInstrumentor"]
