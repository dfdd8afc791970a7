"""Pricing a call before it runs: ``estimate_cost`` and ``LLMCall.estimated_cost``, and a budget built on them."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_margin import LimitDecision, MarginLimitExceeded, attribute, flush, hookimpl
from otel_margin import attributes as attr
from otel_margin.call import Usage
from otel_margin.estimate import estimate_cost
from otel_margin.prices import get_catalog
from otel_margin.standin import openai_client

MESSAGES = [{"role": "user", "content": "Summarise our refund policy for a customer in two sentences."}]
COUNTS = st.integers(min_value=0, max_value=10**9)


class Budget:
    """The docs' example (docs/plugins.md): block a call whose estimated cost would pass the cap."""

    def __init__(self, cap_usd: Decimal) -> None:
        self.cap_usd = cap_usd
        self.estimates: list[Decimal | None] = []
        self.inputs: list[int | None] = []
        self.recorded: list[object] = []

    @hookimpl
    def margin_limit_check(self, call):
        estimate = call.estimated_cost()
        self.estimates.append(estimate)
        self.inputs.append(call.estimated_input_tokens)
        if estimate is not None and estimate > self.cap_usd:
            return LimitDecision(action="block", limit="per-call cap", current_spend_usd=estimate,
                                 limit_usd=self.cap_usd, reason="estimated cost over the cap")
        return None

    @hookimpl
    def margin_record(self, call):
        self.recorded.append((call.error_type, call.cost))


def test_the_estimate_prices_the_input_count_and_the_most_output_the_request_allows(
    standin_server, instrumented, sink, register_plugin
):
    budget = register_plugin(Budget(Decimal("1")), name="test-budget")
    client = openai_client(standin_server)
    with attribute(feature="qa", customer="acme"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=40,
                                       extra_headers={"x-standin-output-tokens": "500"})  # capped at 40
    flush()
    (span,) = sink.llm_spans()
    assert span.attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 40
    (estimate,), (input_tokens,) = budget.estimates, budget.inputs
    # the tokenizer's pre-call count and the reply's output at its limit, priced as the call then was
    assert estimate == get_catalog().price("openai", "gpt-4o-mini", Usage(input_tokens, 40)).total > 0
    actual_input = span.attributes[attr.GEN_AI_USAGE_INPUT_TOKENS]
    assert estimate - Decimal(span.attributes[attr.MARGIN_COST_USD]) == (
        estimate_cost(provider="openai", model="gpt-4o-mini", input_tokens=input_tokens)
        - estimate_cost(provider="openai", model="gpt-4o-mini", input_tokens=actual_input)
    )  # only the input count may differ from the provider's


def test_a_budget_blocks_a_call_whose_estimate_passes_its_cap(standin_server, instrumented, sink, register_plugin):
    client = openai_client(standin_server)
    small = estimate_cost(provider="openai", model="gpt-4o-mini", input_tokens=20, output_tokens=10)
    budget = register_plugin(Budget(small * 100), name="test-budget")
    before = len(standin_server.requests)
    with attribute(feature="qa", customer="acme"), pytest.raises(MarginLimitExceeded, match="per-call cap"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=100_000)
    assert len(standin_server.requests) == before  # never sent
    with attribute(feature="qa", customer="acme"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)
    assert len(standin_server.requests) == before + 1
    assert budget.estimates[0] > budget.cap_usd >= budget.estimates[1]
    flush()
    blocked, allowed = budget.recorded
    # margin_record runs for the blocked call too: no usage, so no cost (status "error", total None)
    assert blocked[0] == "MarginLimitExceeded" and blocked[1].status == "error" and blocked[1].total is None
    assert allowed[0] is None and allowed[1].status == "priced"
    spans = sink.llm_spans()
    assert spans[0].attributes[attr.MARGIN_LIMIT_ACTION] == "block"
    assert Decimal(spans[0].attributes[attr.MARGIN_LIMIT_SPEND_USD]) == budget.estimates[0]


def test_an_unpriced_model_has_no_estimate_never_zero():
    assert estimate_cost(provider="openai", model="no-such-model-anywhere", input_tokens=100, output_tokens=5) is None


@given(input_tokens=COUNTS, output_tokens=COUNTS, more=COUNTS)
def test_the_estimate_is_the_catalogs_price_and_grows_with_output(input_tokens, output_tokens, more):
    estimate = estimate_cost(provider="openai", model="gpt-4o-mini", input_tokens=input_tokens,
                             output_tokens=output_tokens)
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    assert estimate == get_catalog().price("openai", "gpt-4o-mini", usage).total
    bigger = estimate_cost(provider="openai", model="gpt-4o-mini", input_tokens=input_tokens,
                           output_tokens=output_tokens + more)
    assert bigger >= estimate >= 0


@given(value=st.one_of(st.integers(max_value=-1), st.floats(allow_nan=True), st.booleans(), st.text(max_size=5),
                       st.none()))
def test_a_count_that_is_not_a_whole_number_of_tokens_is_refused_by_name(value):
    with pytest.raises(ValueError, match=r"output_tokens = .*whole number of tokens"):
        estimate_cost(provider="openai", model="gpt-4o-mini", input_tokens=1, output_tokens=value)
