"""Side by side with other GenAI instrumentations: one call, exactly one LLM span, ours on it.

Peers: OpenLLMetry's ``opentelemetry-instrumentation-openai`` / ``-anthropic`` and the official
``opentelemetry-instrumentation-openai-v2``; plus the Anthropic SDK's own tracing. Each peer
is instrumented before ours (ours is the outer wrapper: we call past the peer) and after ours
(the peer is outer: we enrich its span, if it made it current). Each test restores the SDK.
"""

from __future__ import annotations

import importlib
import uuid
from typing import Any, Callable

import pytest
import wrapt

from otel_margin import attribute
from otel_margin.instrumentation.anthropic import AnthropicMarginInstrumentor
from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor
from otel_margin.standin import anthropic_client, openai_client

MESSAGES = [{"role": "user", "content": "Classify this ticket."}]

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


def _peer(module: str, name: str) -> Callable[[], Any]:
    def make() -> Any:
        try:
            return getattr(importlib.import_module(module), name)()
        except ImportError as error:  # the peers are an optional extra
            pytest.skip(f"{module} not importable: {error}")

    return make


PEERS = {
    "openllmetry-openai": ("openai", _peer("opentelemetry.instrumentation.openai", "OpenAIInstrumentor")),
    "official-openai-v2": ("openai", _peer("opentelemetry.instrumentation.openai_v2", "OpenAIInstrumentor")),
    "openllmetry-anthropic": ("anthropic", _peer("opentelemetry.instrumentation.anthropic", "AnthropicInstrumentor")),
}


def sdk_methods() -> dict[tuple[Any, str], Any]:
    found = {}
    for instrumentor in (OpenAIMarginInstrumentor(), AnthropicMarginInstrumentor()):
        for patch in instrumentor.patches():
            owner: Any = importlib.import_module(patch.module)
            *path, name = patch.attribute.split(".")
            for part in path:
                owner = getattr(owner, part)
            found[(owner, name)] = vars(owner)[name]
    return found


@pytest.fixture
def pristine_sdk():
    """Fails the test if a wrapper of ours is left anywhere in an SDK method's chain after it.

    The SDK is restored afterwards whatever happened: OpenLLMetry's OpenAI instrumentation and
    the official one do not fully unwrap openai 3.x themselves (their bug, seen alone too).
    """
    before = sdk_methods()
    assert not any(isinstance(v, wrapt.FunctionWrapper) for v in before.values())
    yield
    left = []
    for (owner, name), value in sdk_methods().items():
        while isinstance(value, wrapt.FunctionWrapper):
            if getattr(value._self_wrapper, "__module__", "").startswith("otel_margin."):
                left.append(f"{getattr(owner, '__name__', owner)}.{name}")
            value = value.__wrapped__
    for (owner, name), value in before.items():
        setattr(owner, name, value)
    assert left == []


def run(sdk: str, client: Any, stream: bool, oracle: Any) -> tuple[Any, str]:
    """Make one call; return (expected usage, response model) from the SDK's own objects."""
    if sdk == "openai":
        if stream:
            chunks = list(client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True},
                extra_headers={"x-standin-scenario": "cached"},
            ))
            return oracle.openai_chat([c for c in chunks if not c.choices][0].usage), chunks[0].model
        response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                  extra_headers={"x-standin-scenario": "cached"})
        return oracle.openai_chat(response.usage), response.model
    system = [{"type": "text", "text": f"tenant {uuid.uuid4().hex} " + "rules " * 30,
               "cache_control": {"type": "ephemeral"}}]
    if stream:
        with client.messages.stream(model="claude-haiku-4-5", max_tokens=50, system=system,
                                    messages=MESSAGES) as s:
            final = s.get_final_message()
        return oracle.anthropic(final.usage), final.model
    message = client.messages.create(model="claude-haiku-4-5", max_tokens=50, system=system, messages=MESSAGES)
    return oracle.anthropic(message.usage), message.model


ORDERS = ["peer-first", "peer-last", "peer-last-reordered"]
# "peer-last": the peer wraps ours. Most peers make their span current (we enrich it);
# OpenLLMetry's anthropic wrapper does not (we find it in its wrapper's frame and enrich it).
CASES = [(peer, order) for peer in PEERS for order in ORDERS]
MANAGER_GAP = pytest.mark.xfail(
    strict=True,
    reason="OpenLLMetry's anthropic stream-manager wrapper, outside ours, ends its span when the stream "
    "is consumed, before the manager's exit where ours reads the final message: our attributes come too "
    "late for its span. ensure_outermost() (run by opentelemetry-instrument after all instrumentors load) "
    "avoids it",
)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("peer_name, order", CASES)
def test_one_llm_span_with_our_attributes(otel, standin_server, oracle, pristine_sdk, peer_name, order,
                                          stream, request) -> None:
    if stream and (peer_name, order) == ("openllmetry-anthropic", "peer-last"):
        request.applymarker(MANAGER_GAP)
    sdk, make_peer = PEERS[peer_name]
    peer = make_peer()
    ours = OpenAIMarginInstrumentor() if sdk == "openai" else AnthropicMarginInstrumentor()
    sequence = [peer, ours] if order == "peer-first" else [ours, peer]
    for instrumentor in sequence:
        instrumentor.instrument(tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    if order == "peer-last-reordered":
        from otel_margin.instrumentation import ensure_outermost

        ensure_outermost()  # what the opentelemetry_post_instrument hook does
        sequence = [peer, ours]  # ours is outermost now: uninstrument it first
    try:
        if sdk == "openai":
            client = openai_client(standin_server)
        else:  # the SDK's own tracing counts too
            client = anthropic_client(standin_server, open_telemetry={"tracer_provider": otel.tracer_provider})
        otel.clear()
        with attribute(feature="triage", customer="acme", tier="pro"):
            expected, model = run(sdk, client, stream, oracle)
        span = otel.one_llm_span()
        assert span.attributes["margin.feature"] == "triage"
        assert span.attributes["margin.customer"] == "acme"
        oracle.check_span(span, expected, model=model, provider=sdk)
    finally:
        for instrumentor in reversed(sequence):
            instrumentor.uninstrument()
