"""Instrument / uninstrument / re-instrument leaves the SDKs exactly as they were."""

from __future__ import annotations

import importlib
from typing import Any

import anthropic
import openai
import pytest
import wrapt

from otel_margin.instrumentation.anthropic import AnthropicMarginInstrumentor
from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor
from otel_margin.standin import anthropic_client, openai_client

MESSAGES = [{"role": "user", "content": "hi"}]

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


def targets() -> list[tuple[Any, str]]:
    """Every (owner, attribute name) the two instrumentors patch."""
    found = []
    for instrumentor in (OpenAIMarginInstrumentor(), AnthropicMarginInstrumentor()):
        for patch in instrumentor.patches():
            owner: Any = importlib.import_module(patch.module)
            *path, name = patch.attribute.split(".")
            for part in path:
                owner = getattr(owner, part)
            found.append((owner, name))
    return found


def snapshot() -> dict[tuple[Any, str], Any]:
    return {(owner, name): vars(owner)[name] for owner, name in targets()}


def instrument(otel: Any) -> list[Any]:
    chosen = [OpenAIMarginInstrumentor(), AnthropicMarginInstrumentor()]
    for instrumentor in chosen:
        instrumentor.instrument(tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    return chosen


def uninstrument(chosen: list[Any]) -> None:
    for instrumentor in reversed(chosen):
        instrumentor.uninstrument()


def make_calls(standin_server: Any) -> None:
    """One call through each kind of surface (fresh clients, so no bound method is cached)."""
    oai = openai_client(standin_server)
    ant = anthropic_client(standin_server)
    call_all(oai, ant)


def call_all(oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    list(oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES).parse()
    oai.responses.create(model="gpt-5", input="hi")
    oai.embeddings.create(model="text-embedding-3-small", input="hi")
    ant.messages.create(model="claude-haiku-4-5", max_tokens=20, messages=MESSAGES)
    with ant.messages.stream(model="claude-haiku-4-5", max_tokens=20, messages=MESSAGES) as stream:
        stream.get_final_message()
    ant.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=20, messages=MESSAGES).parse()


CALLS_PER_ROUND = 8


def test_every_patch_target_exists_in_the_installed_sdks() -> None:
    # Otherwise the cycle test below would pass vacuously for a renamed method.
    assert len(targets()) == 15
    assert all(callable(vars(owner)[name]) for owner, name in targets())


def test_cycles_restore_every_method_identically(otel: Any, standin_server: Any) -> None:
    original = snapshot()
    assert not any(isinstance(v, wrapt.FunctionWrapper) for v in original.values())
    for _round in range(3):
        chosen = instrument(otel)
        wrapped = snapshot()
        for key, value in wrapped.items():
            assert isinstance(value, wrapt.FunctionWrapper), key
            assert value.__wrapped__ is original[key], key
        otel.clear()
        make_calls(standin_server)
        assert len(otel.llm_spans()) == CALLS_PER_ROUND
        uninstrument(chosen)
        restored = snapshot()
        for key, value in restored.items():
            assert value is original[key], key
        otel.clear()
        make_calls(standin_server)
        assert otel.llm_spans() == []


def test_clients_created_while_instrumented_stop_tracing_after_uninstrument(otel: Any, standin_server: Any) -> None:
    # Resources cache bound methods (``with_raw_response`` keeps ``create``); a client used
    # while instrumented must still go quiet once we are uninstrumented.
    chosen = instrument(otel)
    oai = openai_client(standin_server)
    ant = anthropic_client(standin_server)
    otel.clear()
    call_all(oai, ant)
    assert len(otel.llm_spans()) == CALLS_PER_ROUND
    uninstrument(chosen)
    otel.clear()
    call_all(oai, ant)
    assert otel.llm_spans() == []
    chosen = instrument(otel)
    try:
        otel.clear()
        call_all(oai, ant)
        assert len(otel.llm_spans()) == CALLS_PER_ROUND  # the same clients, traced again, once per call
    finally:
        uninstrument(chosen)


def test_double_instrument_is_a_no_op(otel: Any, standin_server: Any) -> None:
    first = OpenAIMarginInstrumentor()
    first.instrument(tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    try:
        before = snapshot()
        OpenAIMarginInstrumentor().instrument(tracer_provider=otel.tracer_provider)  # a singleton: ignored
        assert snapshot() == before
        otel.clear()
        openai_client(standin_server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert len(otel.llm_spans()) == 1
    finally:
        first.uninstrument()
    assert not any(isinstance(v, wrapt.FunctionWrapper) for v in snapshot().values())


def test_uninstrument_takes_out_only_our_layer(otel: Any, standin_server: Any) -> None:
    # Someone wrapped after us and is still there: unwrap's sharp edge would drop their layer
    # with ours; we take out ours only, and their wrapper keeps working.
    chosen = instrument(otel)
    owner = openai.resources.embeddings.Embeddings
    original = vars(owner)["create"].__wrapped__
    seen: list[str] = []

    def theirs(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        seen.append(kwargs["model"])
        return wrapped(*args, **kwargs)

    wrapt.wrap_function_wrapper(owner, "create", theirs)
    try:
        uninstrument(chosen)
        current = vars(owner)["create"]
        assert isinstance(current, wrapt.FunctionWrapper) and current._self_wrapper is theirs
        assert current.__wrapped__ is original
        otel.clear()
        openai_client(standin_server).embeddings.create(model="text-embedding-3-small", input="x")
        assert seen == ["text-embedding-3-small"] and otel.llm_spans() == []
    finally:
        setattr(owner, "create", original)
