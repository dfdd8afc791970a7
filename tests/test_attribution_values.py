"""Bad attribution values (issue 18, item 7).

The explicit API raises ``ValueError`` for what the ``llm_calls`` columns cannot hold; values
from outside (W3C baggage, the route mapping) never raise: an unusable one is logged once,
counted in ``margin.refused`` and dropped, so nothing is stored empty by accident. Real SDK calls
to the stand-in; the span goes through the exporter's row path into real chDB.
"""

from __future__ import annotations

import logging
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

import clickhouse_connect
import openai
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from otel_margin import attribute, refusals
from otel_margin import attributes as a
from otel_margin.attribution import MAX_TEXT_LENGTH, ServerRouteTracker, current_attribution
from otel_margin.exporters.rows import COLUMN_NAMES, COLUMNS, FORMAT, encode_rows, span_to_row
from otel_margin.standin import openai_client

MESSAGES = [{"role": "user", "content": "Tell me about otters."}]
TWELVE = Decimal("1e-12")
EXACT = Context(prec=60, rounding=ROUND_HALF_EVEN)  # 38 digits fit


@pytest.fixture(autouse=True)
def _instrumented(instrumented_module: Any, sink: Any) -> None:
    """otel-margin on for this module; spans and metrics cleared before each test."""


@pytest.fixture(scope="module")
def oai(standin_server: Any, instrumented_module: Any) -> openai.OpenAI:
    return openai_client(standin_server)


@pytest.fixture
def rows(tmp_path):
    """``stored(span)``: the span's ``llm_calls`` row as chDB stores it (a function-scoped chDB)."""
    client = clickhouse_connect.get_client(interface="chdb", path=str(tmp_path / "rows"))
    client.command(f"CREATE TABLE rows ({', '.join(f'`{n}` {k}' for n, k in COLUMNS)}) ENGINE = Memory")

    def stored(span: Any) -> dict[str, Any]:
        client.command("TRUNCATE TABLE rows")
        client.raw_insert("rows", column_names=list(COLUMN_NAMES), fmt=FORMAT,
                          insert_block=encode_rows([span_to_row(span, service_name="svc")]).body)
        result = client.query("SELECT * FROM rows")
        (row,) = [dict(zip(result.column_names, values)) for values in result.result_rows]
        return row

    yield stored
    client.close()


def call(oai: openai.OpenAI, sink: Any) -> Any:
    sink.clear()
    oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    return sink.one_llm_span()


# --- the explicit API: a clear ValueError for what cannot be stored ------------------------------


@pytest.mark.parametrize("value", ["NaN", float("nan"), "Infinity", float("-inf"), "ten dollars", True, ""])
def test_revenue_that_is_not_a_finite_amount_raises(value):
    with pytest.raises(ValueError, match=r"attribute\(revenue_usd=.*not a decimal amount; use e.g. '0.02'"):
        attribute(revenue_usd=value)


@pytest.mark.parametrize("value", ["1" * 60, 10**26, "-1e26", Decimal("1E+30"), pytest.param(10**5000, id="10^5000"),
                                   "99999999999999999999999999.9999999999995"])  # rounds to 10^26
def test_revenue_the_column_cannot_hold_raises_naming_the_column(value):
    with pytest.raises(ValueError, match=r"beyond what the revenue_usd column \(Decimal\(38, 12\)\) holds, under 10\^26"):
        attribute(revenue_usd=value)


def test_the_largest_revenue_the_column_holds_is_stored_exactly(oai, sink, rows):
    largest = "9" * 26 + ".999999999999"
    with attribute(feature="f", revenue_usd=largest):
        span = call(oai, sink)
    assert rows(span)["revenue_usd"] == Decimal(largest)


@pytest.mark.parametrize("key", ["feature", "customer", "tier", "cohort"])
def test_a_name_longer_than_the_cap_raises_and_one_at_the_cap_is_stored_byte_for_byte(key, oai, sink, rows):
    with pytest.raises(ValueError, match=rf"attribute\({key}=.*{MAX_TEXT_LENGTH + 1} characters, more than the "
                                         rf"{MAX_TEXT_LENGTH}"):
        attribute(**{key: "x" * (MAX_TEXT_LENGTH + 1)})
    at_cap = ("\x1b[31m\u202e\x00é" + "y" * MAX_TEXT_LENGTH)[:MAX_TEXT_LENGTH]
    with attribute(**{key: at_cap}):
        span = call(oai, sink)
    assert rows(span)[key] == at_cap


_revenues = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),
    st.text(max_size=70),
    st.text(alphabet="0123456789.-+eE", max_size=70),
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(value=_revenues)
@example(value="1" * 60)
@example(value="0.0000000000015")
@example(value=Decimal("-99999999999999999999999999.9999999999995"))
@example(value="99999999999999999999999999.9999999999991")  # 13 decimals: rounded, stored, not emptied
def test_any_revenue_raises_or_is_stored_exactly_never_empty(oai, sink, rows, value):
    try:
        scope = attribute(feature="f", revenue_usd=value)
    except ValueError:
        return
    with scope:
        span = call(oai, sink)
    amount = Decimal(str(value))
    stored = rows(span)["revenue_usd"]
    assert stored is not None and stored == amount.quantize(TWELVE, context=EXACT)


# --- values from outside: never raise; refused, logged once, counted, dropped ---------------------


def _with_baggage(entries: dict[str, object]) -> object:
    ctx = context.get_current()
    for key, value in entries.items():
        ctx = baggage.set_baggage(key, value, ctx)
    return context.attach(ctx)


def test_unusable_baggage_is_refused_logged_once_counted_and_the_next_source_used(oai, sink, rows, caplog):
    before = refusals.counts()
    long_customer = "c" * (MAX_TEXT_LENGTH + 1)
    with caplog.at_level(logging.WARNING, logger="otel_margin"):
        for _ in range(2):
            token = _with_baggage({a.BAGGAGE_FEATURE: "", a.BAGGAGE_CUSTOMER: long_customer, a.BAGGAGE_TIER: 7,
                                   a.BAGGAGE_COHORT: "2026-12"})
            try:
                with attribute(feature="from-api"):
                    span = call(oai, sink)
            finally:
                context.detach(token)
    row = rows(span)
    # The API's feature wins anyway; the refused customer and tier are not stored at all, cut or empty.
    assert (row["feature"], row["customer"], row["tier"], row["cohort"]) == ("from-api", "", "", "2026-12")
    assert a.MARGIN_CUSTOMER not in span.attributes and a.MARGIN_TIER not in span.attributes
    after = refusals.counts()
    for what in ("baggage:margin.feature", "baggage:margin.customer", "baggage:margin.tier"):
        assert after.get(what, 0) - before.get(what, 0) == 2, what
    lines = [r.getMessage() for r in caplog.records if "W3C baggage entry" in r.getMessage()]
    assert len(lines) <= 3  # once per key and kind in this process (earlier tests may have logged some)
    points = {p.attributes[a.MARGIN_REFUSED_WHAT]: p.value for p in sink.metric_points(a.METRIC_REFUSED)}
    assert points["baggage:margin.customer"] == after["baggage:margin.customer"]


def test_a_refusal_is_logged_the_first_time_only(caplog):
    key = f"margin.cohort.test-{id(caplog)}"  # a subject no other test refused
    from otel_margin.attribution import _from_outside

    with caplog.at_level(logging.WARNING, logger="otel_margin"):
        assert _from_outside("baggage", key, "z" * 1000) is None
        assert _from_outside("baggage", key, "z" * 2000) is None
        assert _from_outside("baggage", key, "") is None
    lines = [r.getMessage() for r in caplog.records if key in r.getMessage()]
    assert len(lines) == 2  # too long (once), empty (once)
    assert "has 1000 characters, more than 256" in lines[0] and "margin.refused" in lines[0]


def test_baggage_from_an_upstream_header_within_the_cap_is_stored_byte_for_byte(oai, sink, rows):
    hostile = "acme\x1b[2J\u202eevil\x00\n€"
    header = W3CBaggagePropagator().inject
    carrier: dict[str, str] = {}
    header(carrier, context=baggage.set_baggage(a.BAGGAGE_CUSTOMER, hostile))
    token = context.attach(W3CBaggagePropagator().extract(carrier))
    try:
        span = call(oai, sink)
    finally:
        context.detach(token)
    assert rows(span)["customer"] == hostile


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(customer=st.one_of(st.text(max_size=MAX_TEXT_LENGTH + 40), st.text(min_size=MAX_TEXT_LENGTH - 2,
                                                                          max_size=MAX_TEXT_LENGTH + 2),
                          st.integers(), st.none()))
@example(customer="")
@example(customer="x" * (MAX_TEXT_LENGTH + 1))
def test_any_baggage_customer_is_stored_exactly_or_refused_and_counted_never_raises(oai, sink, rows, customer):
    before = refusals.counts().get("baggage:margin.customer", 0)
    token = _with_baggage({a.BAGGAGE_CUSTOMER: customer})
    try:
        span = call(oai, sink)
    finally:
        context.detach(token)
    stored = rows(span)["customer"]
    refused = refusals.counts().get("baggage:margin.customer", 0) - before
    if isinstance(customer, str) and 0 < len(customer) <= MAX_TEXT_LENGTH:
        # Byte for byte, except what UTF-8 cannot carry (a lone surrogate), which the exporter repairs.
        assert stored == customer.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        assert refused == 0
    elif customer is None:
        assert stored == "" and refused == 0
    else:
        assert stored == "" and refused == 1


def test_a_route_mapped_feature_that_is_not_usable_is_refused_and_the_call_unattributed(caplog):
    provider = TracerProvider()
    provider.add_span_processor(ServerRouteTracker())
    tracer = provider.get_tracer("test")
    routes = {"/api/long": "f" * (MAX_TEXT_LENGTH + 1), "/api/empty": "", "/api/ok": "ok"}
    before = refusals.counts().get("route:margin.feature", 0)
    with caplog.at_level(logging.WARNING, logger="otel_margin"):
        for route, want in (("/api/long", None), ("/api/empty", None), ("/api/ok", "ok"), ("/api/long", None)):
            with tracer.start_as_current_span("GET", kind=SpanKind.SERVER) as server:
                server.set_attribute("http.route", route)
                assert current_attribution(routes).feature == want
    assert refusals.counts()["route:margin.feature"] - before == 3
    assert sum("route mapping" in r.getMessage() for r in caplog.records) <= 2
