"""Money bugs the rest of the suite let through, each pinned by an independently computed amount.

* Subscription revenue of a customer whose calls in a period are all unpriced (or carry no
  tokens) is split by call counts; the view never divides by a zero weight.
* Reasoning tokens are part of the output tokens: charged once, at the reasoning price where
  the catalog lists one, else inside output at the output price.
* A contract discount of 0 % and a self-hosted per-token price without an output price are
  refused with a line-numbered error naming the fix; an accepted discount scales every price
  exactly.
* A routed call's saving is the same usage priced at the model asked for minus the model that
  answered (not the whole cost of the model asked for).

Expected amounts come from the test's own arithmetic (fractions of hand-written numbers) or
from ``genai_prices.calc_price``, never from otel-margin's code.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any

import genai_prices
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from chdb_fixtures import call, chdb_client, chdb_path, database, insert_calls  # noqa: F401 - fixtures
from otel_margin import attribute, hookimpl
from otel_margin.analysis import margin
from otel_margin import attributes as attr
from otel_margin.call import Usage
from otel_margin.policy import PolicyError, parse_policy
from otel_margin.prices import PriceCatalog
from otel_margin.analysis.revenue import ImportResult, RevenueEvent, RevenueFileError, import_revenue, parse_revenue_csv
from otel_margin.standin import openai_client

MTOK = 10**6
MAY_1, MAY_31 = date(2024, 5, 1), date(2024, 5, 31)


# --- subscription revenue over a period of unpriced calls ----------------------------------------


def unpriced_calls(customer: str, per_feature: dict[str, int], *, tokens: int = 100) -> list[dict[str, Any]]:
    rows = []
    for feature, count in per_feature.items():
        for i in range(count):
            moment = datetime(2024, 5, 1 + i % 28, 12, tzinfo=timezone.utc)
            rows.append(call(timestamp=moment, feature=feature, customer=customer, cost_usd=None,
                             input_tokens=tokens, output_tokens=0))
    return rows


def revenue_by_feature(client: Any, db: str, allocate_by: str) -> dict[str, Decimal]:
    rows = margin.margin_by(client, "feature", start=MAY_1, end=MAY_31, allocate_by=allocate_by, database=db)
    return {row.key: row.revenue_usd for row in rows}


@pytest.mark.parametrize(("allocate_by", "tokens"), [("cost", 100), ("tokens", 0)])
def test_revenue_of_a_period_without_priced_calls_is_split_by_call_counts(
    chdb_client, database, allocate_by, tokens
):
    # Every call unpriced (no cost weight) or empty (no token weight): 3 of 4 calls are search.
    insert_calls(chdb_client, database, unpriced_calls("zed", {"search": 3, "docs": 1}, tokens=tokens))
    import_revenue(chdb_client, [RevenueEvent("zed", MAY_1, MAY_31, Decimal("10.00"), "pro")],
                   source="test.csv", database=database)
    got = revenue_by_feature(chdb_client, database, allocate_by)
    assert got == {"search": Decimal("7.50"), "docs": Decimal("2.50")}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(counts=st.lists(st.integers(1, 5), min_size=1, max_size=4),
       cents=st.integers(1, 10**9), allocate_by=st.sampled_from(["cost", "calls"]))
def test_unpriced_periods_split_any_amount_by_calls_and_add_up_exactly(
    chdb_client, database, counts, cents, allocate_by
):
    # One customer and its own feature names per example (the examples share one database).
    customer = f"u{next(_EXAMPLES)}"
    per_feature = {f"{customer}-f{i}": count for i, count in enumerate(counts)}
    insert_calls(chdb_client, database, unpriced_calls(customer, per_feature))
    amount = Decimal(cents) / 100
    import_revenue(chdb_client, [RevenueEvent(customer, MAY_1, MAY_31, amount, "pro")],
                   source="test.csv", database=database)
    got = {key: value for key, value in revenue_by_feature(chdb_client, database, allocate_by).items()
           if key in per_feature}
    assert set(got) == set(per_feature)
    assert sum(got.values()) == amount  # the parts add up to the cent, and beyond
    for feature, count in per_feature.items():
        assert abs(Fraction(got[feature]) - Fraction(amount) * count / sum(counts)) <= Fraction(1, 10**9)


_EXAMPLES = iter(range(10**9))



money_12 = st.decimals(min_value=Decimal("-1e15"), max_value=Decimal("1e15"), places=12)


@settings(max_examples=500, deadline=None)
@given(revenue=money_12, cost=money_12)
def test_margin_pct_is_truncated_exactly_like_decimal_38_12(revenue, cost):
    # (revenue - cost) / revenue x 100, cut (toward zero) to 12 places as ClickHouse's division cuts.
    got = margin.margin_pct(revenue, cost)
    if revenue == 0:
        assert got is None
        return
    exact = (Fraction(revenue) - Fraction(cost)) * 100 / Fraction(revenue)
    cut = Fraction(int(exact * 10**12), 10**12)  # int() truncates toward zero
    assert got is not None and Fraction(got) == cut and got.as_tuple().exponent == -12



def test_a_reimport_stores_the_new_rows_that_follow_an_unchanged_one(chdb_client, database):
    may = RevenueEvent("acme", MAY_1, MAY_31, Decimal("10.00"), "pro")
    june = RevenueEvent("acme", date(2024, 6, 1), date(2024, 6, 30), Decimal("11.00"), "pro")
    beta = RevenueEvent("beta", MAY_1, MAY_31, Decimal("4.00"), "team")
    assert import_revenue(chdb_client, [may], source="may.csv", database=database) == ImportResult(1, 0, 0)
    # The month already imported comes first in the next file: the rows after it still count.
    assert import_revenue(chdb_client, [may, june, beta], source="all.csv", database=database) == ImportResult(2, 0, 1)
    corrected = RevenueEvent("acme", MAY_1, MAY_31, Decimal("9.00"), "pro")
    assert import_revenue(chdb_client, [corrected, beta], source="fix.csv", database=database) == ImportResult(0, 1, 1)
    stored = chdb_client.query(
        f"SELECT customer, period_start, amount_usd FROM `{database}`.revenue_events FINAL "
        "ORDER BY customer, period_start").result_rows
    assert stored == [("acme", MAY_1, Decimal("9.00")), ("acme", date(2024, 6, 1), Decimal("11.00")),
                      ("beta", MAY_1, Decimal("4.00"))]


def test_an_amount_changed_back_to_an_earlier_value_is_stored(chdb_client, database):
    # A correction undone: 10 -> 12 -> 10. The third insert has the first one's rows; ClickHouse's
    # insert deduplication must not take it for a retry of the first and drop it.
    event = {amount: RevenueEvent("acme", MAY_1, MAY_31, Decimal(amount), "pro") for amount in ("10", "12")}
    for amount in ("10", "12", "10", "12"):
        import_revenue(chdb_client, [event[amount]], source="r.csv", database=database)
        stored = chdb_client.query(f"SELECT amount_usd FROM `{database}`.revenue_events FINAL").result_rows
        assert stored == [(Decimal(amount),)]

@settings(max_examples=300, deadline=None)
@given(digits=st.integers(0, 10**30), places=st.integers(0, 16), negative=st.booleans())
def test_a_revenue_amount_is_accepted_exactly_below_10_15_with_at_most_12_places(digits, places, negative):
    # docs/margin.md: a plain decimal, up to 12 decimal places, below 10^15 USD (a credit is negative).
    text = str(digits).rjust(places + 1, "0")
    text = f"{'-' if negative else ''}{text[:len(text) - places]}{'.' if places else ''}{text[len(text) - places:]}"
    value = Fraction(digits, 10**places)
    fits = value < 10**15 and places <= 12
    csv_text = f"customer,period,amount,currency,tier,feature\nacme,2024-05,{text},USD,pro,\n"
    if fits:
        (event,) = parse_revenue_csv(csv_text)
        assert Fraction(event.amount_usd) == (-value if negative else value)
    else:
        with pytest.raises(RevenueFileError, match="revenue.csv line 2: amount"):
            parse_revenue_csv(csv_text)


@pytest.mark.parametrize(("amount", "fits"), [("0.000000000001", True), ("-0.000000000001", True),
                                              ("0.0000000000001", False), ("999999999999999.999999999999", True),
                                              ("1000000000000000", False), ("-1000000000000000", False)])
def test_revenue_amount_limits_at_their_edges(amount, fits):
    csv_text = f"customer,period,amount,currency,tier,feature\nacme,2024-05,{amount},USD,pro,\n"
    if fits:
        assert parse_revenue_csv(csv_text)[0].amount_usd == Decimal(amount)
    else:
        with pytest.raises(RevenueFileError):
            parse_revenue_csv(csv_text)


def test_every_customer_losing_money_is_listed_worst_first_however_small_the_loss(chdb_client, database):
    moment = datetime(2024, 5, 6, 9, tzinfo=timezone.utc)
    insert_calls(chdb_client, database, [
        call(timestamp=moment, customer="cent", cost_usd=Decimal("0.01")),  # loses one cent
        call(timestamp=moment, customer="heavy", cost_usd=Decimal("3.00"), revenue_usd=Decimal("1.00")),
        call(timestamp=moment, customer="even", cost_usd=Decimal("0.50"), revenue_usd=Decimal("0.50")),
        call(timestamp=moment, customer="earns", cost_usd=Decimal("0.20"), revenue_usd=Decimal("0.90")),
    ])
    losers = margin.negative_margin_customers(chdb_client, start=MAY_1, end=MAY_31, database=database)
    assert [(row.key, row.margin_usd) for row in losers] == [("heavy", Decimal("-2")), ("cent", Decimal("-0.01"))]

# --- reasoning tokens ------------------------------------------------------------------------------


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    """Usage with reasoning inside output, as the providers report it."""
    output_tokens = draw(st.integers(0, 200_000))
    return Usage(input_tokens=draw(st.integers(0, 100_000)), output_tokens=output_tokens,
                 reasoning_tokens=draw(st.integers(0, output_tokens)))


def reasoning_priced_models() -> list[tuple[str, str, Decimal, Decimal]]:
    """Catalog models with their own reasoning price: (provider, model, output $/MTok, reasoning $/MTok)."""
    from genai_prices import data_snapshot, types

    found = []
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            prices = model.prices
            if (isinstance(prices, types.ModelPrice) and isinstance(prices.output_mtok, Decimal)
                    and isinstance(getattr(prices, "output_reasoning_mtok", None), Decimal)):
                found.append((provider.id, model.id, prices.output_mtok, prices.output_reasoning_mtok))
    return found


REASONING_PRICED = reasoning_priced_models()


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog(log_unpriced=False)


def test_reasoning_tokens_at_their_own_price_are_not_also_charged_as_output(catalog):
    # Hand arithmetic: 2,000 output tokens of which 500 reasoning, at the catalog's two prices.
    assert REASONING_PRICED, "the catalog no longer lists a reasoning price: pick another check"
    for provider, model, output_mtok, reasoning_mtok in REASONING_PRICED:
        assert output_mtok != reasoning_mtok, model  # else a double charge could hide
        cost = catalog.price(provider, model, Usage(input_tokens=0, output_tokens=2_000, reasoning_tokens=500))
        assert cost.output == (1_500 * output_mtok + 500 * reasoning_mtok) / MTOK, (provider, model)
        assert cost.total == cost.output


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(usage=usages(), which=st.integers(0, 1000))
def test_reasoning_priced_models_agree_with_genai_prices(catalog, usage, which):
    provider, model, _, _ = REASONING_PRICED[which % len(REASONING_PRICED)]
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                           output_reasoning_tokens=usage.reasoning_tokens),
        model, provider_id=provider,
    ).total_price
    assert catalog.price(provider, model, usage).total == expected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(usage=usages(), model=st.sampled_from([("openai", "o3-mini"), ("openai", "gpt-5-mini"),
                                             ("anthropic", "claude-haiku-4-5"), ("openai", "gpt-4o-mini")]))
def test_reasoning_without_its_own_price_is_inside_output_at_the_output_price(catalog, usage, model):
    resolved = catalog.lookup(*model)
    assert resolved is not None and resolved.reasoning is None and resolved.output is not None
    cost = catalog.price(*model, usage)
    # Untiered output price: the output component is output tokens x price, whatever the reasoning share.
    assert not resolved.output.tiers
    assert cost.output == usage.output_tokens * resolved.output.base / MTOK
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                           output_reasoning_tokens=usage.reasoning_tokens),
        model[1], provider_id=model[0],
    ).total_price
    assert cost.total == expected



# --- prices: survivors of the mutation run (docs/reliability.md, "Mutation testing") --------------


@pytest.mark.parametrize(("source", "status"), [("provider", "priced"), ("estimated", "estimated"), ("cache", "priced")])
def test_a_cost_is_estimated_exactly_when_its_tokens_were_counted(catalog, source, status):
    cost = catalog.price("openai", "gpt-4o-mini", Usage(input_tokens=10, output_tokens=5, source=source))
    assert cost.status == status


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tokens=st.integers(0, 10**7))
def test_an_input_only_catalog_price_prices_embeddings(catalog, tokens):
    usage = Usage(input_tokens=tokens, output_tokens=0)
    expected = genai_prices.calc_price(genai_prices.Usage(input_tokens=tokens), "text-embedding-3-small",
                                       provider_id="openai").total_price
    cost = catalog.price("openai", "text-embedding-3-small", usage)
    assert (cost.status, cost.total) == ("priced", expected)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(usage=usages(), seconds=st.floats(0, 10**5, allow_nan=False))
def test_a_catalog_price_does_not_depend_on_the_call_duration(catalog, usage, seconds):
    # The pipeline always passes the call's duration; only GPU-second prices may use it.
    assert catalog.price("openai", "gpt-4o-mini", usage, duration_s=seconds) == catalog.price(
        "openai", "gpt-4o-mini", usage)



def models_without_token_prices() -> list[tuple[str, str]]:
    """Catalog models whose price set has neither an input nor an output token price."""
    from genai_prices import data_snapshot, types

    snapshot = data_snapshot.get_snapshot()
    found = []
    for provider in snapshot.providers:
        for model in provider.models:
            prices = model.prices
            if isinstance(prices, types.ModelPrice) and prices.input_mtok is None and prices.output_mtok is None:
                try:  # the catalog must find the model by its own id, else nothing is checked
                    found_provider, info = snapshot.find_provider_model(model.id, None, provider.id, None)
                except LookupError:
                    continue
                if info.id == model.id:
                    found.append((provider.id, model.id))
    return found


def test_a_catalog_model_without_token_prices_is_unpriced_never_zero(catalog):
    models = models_without_token_prices()
    assert models  # else this checks nothing
    for provider, model in models:
        cost = catalog.price(provider, model, Usage(input_tokens=1_000, output_tokens=100))
        assert (cost.status, cost.total) == ("unpriced", None), (provider, model)

REQUEST_FEE_MODELS = [("perplexity", model) for model in ("sonar", "sonar-pro", "sonar-reasoning")]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(usage=usages(), model=st.sampled_from(REQUEST_FEE_MODELS))
def test_a_per_request_fee_is_charged_once_per_call_like_genai_prices(catalog, usage, model):
    reference = genai_prices.Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)
    calculated = genai_prices.calc_price(reference, model[1], provider_id=model[0])
    fee = calculated.model_price.requests_kcount
    assert fee  # a model with a per-request fee, else this test checks nothing
    cost = catalog.price(*model, usage)
    assert cost.other == Fraction(fee) / 1000 and cost.total == calculated.total_price


def test_gpu_time_is_never_negative():
    policy = parse_policy('[prices.self_hosted.llama]\ngpu_second_usd = "0.002"\ngpus = 2\n')
    catalog = PriceCatalog(policy)
    usage = Usage(input_tokens=100, output_tokens=10)
    assert catalog.price("vllm", "llama", usage, duration_s=1.5).other == Decimal("0.006")  # 1.5 s x 2 GPUs
    assert catalog.price("vllm", "llama", usage, duration_s=0.25).other == Decimal("0.001")  # no minimum second
    assert catalog.price("vllm", "llama", usage, duration_s=-3.0).other == 0  # a clock step back costs nothing

# --- policy: discounts and self-hosted per-token prices -------------------------------------------


def policy_error(text: str) -> str:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    return str(caught.value)


@pytest.mark.parametrize("zero", ["0", "0.0", '"0"', '"0.00"', "-0.0"])
def test_a_zero_percent_discount_is_refused_with_its_line(zero):
    text = f'# contract\n[[prices.discounts]]\nprovider = "openai"\npercent = {zero}\n'
    assert policy_error(text).startswith(
        f"otel-margin.toml line 4: [[prices.discounts]] (entry 1) percent = {zero} is not valid; "
        "expected a percentage strictly between 0 and 100, like 15"
    )


@pytest.mark.parametrize(("table", "present", "missing"), [
    ("prices.self_hosted.llama", "input_per_mtok", "output_per_mtok"),
    ("prices.self_hosted.llama", "output_per_mtok", "input_per_mtok"),
    ('hosts."gpu-box:8000"', "input_per_mtok", "output_per_mtok"),
])
def test_a_per_token_self_hosted_price_needs_both_directions(table, present, missing):
    provider = 'provider = "vllm"\n' if table.startswith("hosts") else ""
    text = f'[features.chat]\nunit_price_usd = "0.01"\n\n[{table}]\n{provider}{present} = "0.40"\n'
    message = policy_error(text)
    assert message.startswith(f"otel-margin.toml line 4: [{table}] missing required key '{missing}'; "
                              f'add {missing} = "0.50"'), message


def test_an_input_only_self_hosted_price_never_prices_output_at_zero():
    # Were it accepted, output would cost $0 while the call reads "priced".
    with pytest.raises(PolicyError):
        parse_policy('[prices.self_hosted.llama]\ninput_per_mtok = "0.40"\n')
    policy = parse_policy('[prices.self_hosted.llama]\ninput_per_mtok = "0.40"\noutput_per_mtok = "1.60"\n')
    cost = PriceCatalog(policy).price("vllm", "llama", Usage(input_tokens=1_000, output_tokens=250))
    assert (cost.status, cost.input, cost.output) == ("priced", Decimal("0.0004"), Decimal("0.0004"))


@settings(max_examples=100, deadline=None)
@given(percent=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99.99"), places=2), usage=usages())
def test_an_accepted_discount_scales_the_catalog_price_exactly(percent, usage):
    policy = parse_policy(f'[[prices.discounts]]\nprovider = "openai"\nmodel = "gpt-4o-mini*"\npercent = "{percent}"\n')
    list_price = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens),
        "gpt-4o-mini", provider_id="openai",
    ).total_price
    cost = PriceCatalog(policy, log_unpriced=False).price("openai", "gpt-4o-mini", usage)
    assert Fraction(cost.total) == Fraction(list_price) * (100 - Fraction(percent)) / 100


# --- routing ---------------------------------------------------------------------------------------


class RouteTo:
    def __init__(self, frm: str, to: str) -> None:
        self.frm, self.to = frm, to

    @hookimpl
    def margin_route(self, call):
        return self.to if call.model == self.frm else None


@pytest.mark.parametrize(("asked", "routed"), [("gpt-4o", "gpt-4o-mini"), ("gpt-4.1", "gpt-4.1-nano")])
def test_a_routing_saving_is_the_difference_of_both_models_prices(
    sink, instrumented, register_plugin, standin_server, oracle, asked, routed
):
    register_plugin(RouteTo(asked, routed), name="test-route")
    client = openai_client(standin_server)
    with attribute(feature="route-saving"):
        response = client.chat.completions.create(
            model=asked, messages=[{"role": "user", "content": "summarise the quarter"}],
            extra_headers={"x-standin-output-tokens": "700"})
    span = sink.one_llm_span()
    assert span.attributes[attr.MARGIN_ROUTE_FROM_MODEL] == asked
    usage = oracle.openai_chat(response.usage)
    would_have = oracle.cost(usage, asked, "openai")
    paid = oracle.cost(usage, response.model, "openai")
    assert paid < would_have
    assert Decimal(span.attributes[attr.MARGIN_COST_USD]) == paid
    assert Decimal(span.attributes[attr.MARGIN_SAVED_USD]) == would_have - paid
