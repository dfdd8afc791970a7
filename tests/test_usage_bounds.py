"""Usage no call can have is refused, never priced (issue 18, item 4).

The stand-in replaces the usage fields of its reply (``x-standin-usage``); the real SDKs parse
it; the span goes through the exporter's row path into real chDB. A stored row is either a
priced row whose token counts are those the provider sent and whose cost is genai-prices'
own, or it is not labelled ``priced``: never a wrapped or zeroed count under a price.
"""

from __future__ import annotations

import json
import logging
import uuid
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import anthropic
import clickhouse_connect
import openai
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan

from conftest import Expected
from otel_margin import attributes as a
from otel_margin import refusals, usage_bounds
from otel_margin.environment_variables import OTEL_MARGIN_MAX_TOKENS_PER_CALL
from otel_margin.exporters.clickhouse import ClickHouseSpanExporter
from otel_margin.exporters.rows import COLUMN_NAMES, COLUMNS, FORMAT, encode_rows, span_to_row
from otel_margin.exporters.storage import StorageConfig, session
from otel_margin.standin import USAGE_HEADER, anthropic_client, openai_client

MESSAGES = [{"role": "user", "content": "Tell me about otters."}]
BOUND = usage_bounds.DEFAULT_MAX_TOKENS_PER_CALL

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


@pytest.fixture(autouse=True)
def _instrumented(instrumented_module: Any, sink: Any) -> None:
    """otel-margin on for this module; spans and metrics cleared before each test."""


@pytest.fixture(scope="module")
def oai(standin_server: Any, instrumented_module: Any) -> openai.OpenAI:
    return openai_client(standin_server)


@pytest.fixture(scope="module")
def ant(standin_server: Any, instrumented_module: Any) -> anthropic.Anthropic:
    return anthropic_client(standin_server)


def usage(**fields: Any) -> dict[str, str]:
    return {USAGE_HEADER: json.dumps(fields)}


def stored_rows(spans: list[ReadableSpan], tmp_path: Any) -> list[dict[str, Any]]:
    """``spans`` exported by the ClickHouse exporter into a fresh chDB, read back."""
    config = StorageConfig(endpoint=f"chdb://{tmp_path / 'chdb'}", database="otel_margin",
                           spool_dir=str(tmp_path / "spool"), timeout=5)
    exporter = ClickHouseSpanExporter(endpoint=config.endpoint, spool_dir=config.spool_dir, drain_interval=30)
    exporter.export(spans)
    assert exporter.force_flush(10_000)
    exporter.shutdown()
    with session(config) as client:
        result = client.query("SELECT * FROM otel_margin.llm_calls ORDER BY timestamp")
        return [dict(zip(result.column_names, row)) for row in result.result_rows]


# --- absurd counts through the real SDKs into chDB -----------------------------------------------


ABSURD = [
    pytest.param("openai-chat", {"prompt_tokens": 10**30}, id="chat-prompt-1e30"),
    pytest.param("openai-chat", {"completion_tokens": 2**64 - 1}, id="chat-completion-2^64-1"),
    pytest.param("openai-chat-stream", {"prompt_tokens": 10**30}, id="chat-stream-prompt-1e30"),
    pytest.param("openai-responses", {"input_tokens": 2**64 - 1}, id="responses-input-2^64-1"),
    pytest.param("openai-embeddings", {"prompt_tokens": 10**30}, id="embeddings-1e30"),
    pytest.param("anthropic", {"input_tokens": 2**64 - 1}, id="anthropic-input-2^64-1"),
    pytest.param("anthropic", {"cache_read_input_tokens": 10**30}, id="anthropic-cache-read-1e30"),
    pytest.param("anthropic-stream", {"output_tokens": 2**64}, id="anthropic-stream-output-2^64"),
]


def run(kind: str, oai: openai.OpenAI, ant: anthropic.Anthropic, headers: dict[str, str], model: str = "") -> None:
    if kind == "openai-chat":
        oai.chat.completions.create(model=model or "gpt-4o-mini", messages=MESSAGES, extra_headers=headers)
    elif kind == "openai-chat-stream":
        for _ in oai.chat.completions.create(model=model or "gpt-4o-mini", messages=MESSAGES, stream=True,
                                             extra_headers=headers):
            pass
    elif kind == "openai-responses":
        oai.responses.create(model=model or "gpt-4o-mini", input="Tell me about otters.", extra_headers=headers)
    elif kind == "openai-embeddings":
        oai.embeddings.create(model=model or "text-embedding-3-small", input="otters", extra_headers=headers)
    elif kind == "anthropic":
        ant.messages.create(model=model or "claude-sonnet-4-5", max_tokens=64, messages=MESSAGES,
                            extra_headers=headers)
    elif kind == "anthropic-stream":
        for _ in ant.messages.create(model=model or "claude-sonnet-4-5", max_tokens=64, messages=MESSAGES,
                                     stream=True, extra_headers=headers):
            pass
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize(("kind", "fields"), ABSURD)
def test_absurd_usage_is_stored_invalid_without_cost_or_wrapped_counts(kind, fields, oai, ant, sink, tmp_path):
    run(kind, oai, ant, usage(**fields))
    span = sink.one_llm_span()
    attrs = span.attributes
    assert attrs[a.MARGIN_COST_STATUS] == "invalid"
    assert a.MARGIN_COST_USD not in attrs and a.MARGIN_COST_INPUT_USD not in attrs
    # No integer attribute an int64 (OTLP) or the UInt64 column cannot hold.
    assert not [key for key in attrs if key.startswith("gen_ai.usage.")]
    recorded = sink.metrics()
    assert a.METRIC_COST not in recorded and a.METRIC_TOKEN_USAGE not in recorded
    (row,) = stored_rows([span], tmp_path)
    assert row["cost_status"] == "invalid" and row["cost_usd"] is None
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"]) == (0, 0, 0)
    assert row["cost_input_usd"] == row["cost_output_usd"] == Decimal(0)


def test_the_bound_is_per_call_not_the_context_window(oai, sink, oracle):
    # gpt-4o-mini's context window is 128,000 tokens; the bound is 10 M input + output per call.
    oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                extra_headers=usage(prompt_tokens=BOUND - 20, completion_tokens=20))
    at_bound = sink.one_llm_span()
    oracle.check_span(at_bound, Expected(BOUND - 20, 20), model="gpt-4o-mini-2024-07-18", provider="openai")
    sink.clear()
    oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                extra_headers=usage(prompt_tokens=BOUND - 19, completion_tokens=20))
    assert sink.one_llm_span().attributes[a.MARGIN_COST_STATUS] == "invalid"


def test_the_bound_comes_from_the_environment_and_a_bad_value_keeps_the_default(oai, sink, monkeypatch, caplog):
    try:
        monkeypatch.setenv(OTEL_MARGIN_MAX_TOKENS_PER_CALL, "1_000")
        assert usage_bounds.load_bound() == 1000
        oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                    extra_headers=usage(prompt_tokens=980, completion_tokens=20))
        oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                    extra_headers=usage(prompt_tokens=981, completion_tokens=20))
        statuses = [s.attributes[a.MARGIN_COST_STATUS] for s in sink.llm_spans()]
        assert statuses == ["priced", "invalid"]
        monkeypatch.setenv(OTEL_MARGIN_MAX_TOKENS_PER_CALL, "lots")
        with caplog.at_level(logging.WARNING, logger="otel_margin"):
            assert usage_bounds.load_bound() == BOUND
        assert OTEL_MARGIN_MAX_TOKENS_PER_CALL in caplog.text and "'lots'" in caplog.text
    finally:
        monkeypatch.delenv(OTEL_MARGIN_MAX_TOKENS_PER_CALL)
        usage_bounds.load_bound()


def test_refused_usage_is_warned_once_per_model_and_every_call_counted(oai, sink, caplog):
    models = [f"gpt-4o-mini-test-{uuid.uuid4().hex[:8]}", f"gpt-4o-test-{uuid.uuid4().hex[:8]}"]
    before = refusals.counts().get("usage", 0)
    with caplog.at_level(logging.WARNING, logger="otel_margin"):
        for model in (models[0], models[0], models[1], models[0]):
            run("openai-chat", oai, None, usage(prompt_tokens=10**30), model=model)  # type: ignore[arg-type]
        sink.spans()  # every call finished
    warned = [r for r in caplog.records if "more than one call can use" in r.getMessage()]
    assert sorted(m for r in warned for m in models if m in r.getMessage()) == sorted(models)
    assert "about 10^30" in warned[0].getMessage() and OTEL_MARGIN_MAX_TOKENS_PER_CALL in warned[0].getMessage()
    assert refusals.counts()["usage"] == before + 4
    points = [p for p in sink.metric_points(a.METRIC_REFUSED) if p.attributes[a.MARGIN_REFUSED_WHAT] == "usage"]
    assert [p.value for p in points] == [before + 4]


def _span_from_elsewhere(**attributes: Any) -> ReadableSpan:
    """A span as another process or release may send it (the exporter trusts no attribute type)."""
    from opentelemetry.sdk.trace import TracerProvider

    base = {a.GEN_AI_OPERATION_NAME: "chat", a.GEN_AI_PROVIDER_NAME: "openai", a.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
            a.GEN_AI_USAGE_INPUT_TOKENS: 100, a.GEN_AI_USAGE_OUTPUT_TOKENS: 20, a.MARGIN_COST_USD: "0.000027",
            a.MARGIN_COST_INPUT_USD: "0.000015", a.MARGIN_COST_OUTPUT_USD: "0.000012", a.MARGIN_COST_STATUS: "priced"}
    base.update(attributes)
    span = TracerProvider().get_tracer("elsewhere").start_span("chat gpt-4o-mini",
                                                                attributes={k: v for k, v in base.items() if v is not None})
    span.end()
    return span


def test_rows_never_keep_a_price_over_counts_the_columns_cannot_hold_nor_priced_without_a_cost(tmp_path):
    spans = [
        _span_from_elsewhere(),  # well formed: stays priced
        _span_from_elsewhere(**{a.GEN_AI_USAGE_INPUT_TOKENS: 10**30, a.MARGIN_COST_USD: "150000000000000000000000",
                                a.MARGIN_COST_INPUT_USD: "150000000000000000000000"}),  # an older release's bug
        _span_from_elsewhere(**{a.GEN_AI_USAGE_OUTPUT_TOKENS: -3}),
        _span_from_elsewhere(**{a.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: "seven"}),
        _span_from_elsewhere(**{a.MARGIN_COST_USD: None}),  # "priced" with no cost
        _span_from_elsewhere(**{a.MARGIN_COST_USD: "1" * 40, a.MARGIN_COST_STATUS: "estimated"}),  # cost too big
    ]
    rows = stored_rows(spans, tmp_path)
    # Decimals normalised: the same amount reads 0.000015 or 0.000015000000 depending on how it was fetched.
    by_output = sorted(((r["cost_status"], r["cost_usd"] and r["cost_usd"].normalize(), r["input_tokens"],
                         r["cost_input_usd"].normalize()) for r in rows), key=str)
    assert by_output == sorted([
        ("priced", Decimal("0.000027"), 100, Decimal("0.000015")),
        ("invalid", None, 0, Decimal(0)),
        ("invalid", None, 100, Decimal(0)),
        ("invalid", None, 100, Decimal(0)),
        ("invalid", None, 100, Decimal("0.000015")),
        ("invalid", None, 100, Decimal("0.000015")),
    ], key=str)


# --- counts that are not numbers -----------------------------------------------------------------


@pytest.mark.parametrize("way", ["create", "stream", "messages.stream"])
def test_an_anthropic_count_that_is_not_a_number_is_estimated_not_one_provider_token(way, ant, sink, tmp_path):
    headers = {**usage(output_tokens="seven"), "x-standin-output-tokens": "40"}
    if way == "create":
        ant.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES, extra_headers=headers)
    elif way == "stream":
        for _ in ant.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES, stream=True,
                                     extra_headers=headers):
            pass
    else:
        with ant.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES,
                                 extra_headers=headers) as stream:
            stream.until_done()
    attrs = sink.one_llm_span().attributes
    assert attrs[a.MARGIN_USAGE_SOURCE] == "estimated" and attrs[a.MARGIN_COST_STATUS] == "estimated"
    # The reply's text is 40 words: the output is counted from it, not taken from message_start's 1.
    assert attrs[a.GEN_AI_USAGE_OUTPUT_TOKENS] >= 40
    (row,) = stored_rows([sink.one_llm_span()], tmp_path)
    assert row["usage_source"] == "estimated" and row["output_tokens"] >= 40 and row["cost_status"] == "estimated"


# --- any usage value: a priced row is exact, anything else is not labelled priced ----------------


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


_usage_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**200),
    st.integers(min_value=0, max_value=100_000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from([10**30, 2**64 - 1, 2**64, 2**63, BOUND, BOUND + 1, -1, 7.0, "7", "seven", 1e30]),
)


@pytest.fixture
def row_table(tmp_path):
    """A table of ``llm_calls``' columns in a function-scoped chDB (one directory per process)."""
    client = clickhouse_connect.get_client(interface="chdb", path=str(tmp_path / "rows"))
    client.command(f"CREATE TABLE rows ({', '.join(f'`{n}` {k}' for n, k in COLUMNS)}) ENGINE = Memory")
    yield client
    client.close()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(prompt=_usage_values, completion=_usage_values, stream=st.booleans())
@example(prompt=10**30, completion=20, stream=False)
@example(prompt=2**64 - 1, completion=0, stream=True)
@example(prompt=8, completion="seven", stream=True)
@example(prompt=-5, completion=20, stream=False)
@example(prompt=False, completion=20, stream=True)
def test_any_usage_value_is_an_exact_priced_row_or_not_labelled_priced(oai, sink, oracle, row_table, prompt,
                                                                       completion, stream):
    sink.clear()
    headers = usage(prompt_tokens=prompt, completion_tokens=completion)
    if stream:
        for _ in oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                             extra_headers=headers):
            pass
        # The usage chunk is hidden from this caller: what reached us is the wire JSON.
        sent = json.loads(headers[USAGE_HEADER])
        prompt, completion = sent["prompt_tokens"], sent["completion_tokens"]
    else:
        # The SDK's own reading of the reply is what the caller sees (it reads "7" and 7.0 as 7).
        reply = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers)
        prompt, completion = reply.usage.prompt_tokens, reply.usage.completion_tokens
    span = sink.one_llm_span()
    row_table.command("TRUNCATE TABLE rows")
    row_table.raw_insert("rows", column_names=list(COLUMN_NAMES), fmt=FORMAT,
                         insert_block=encode_rows([span_to_row(span, service_name="svc")]).body)
    result = row_table.query("SELECT * FROM rows")
    (row,) = [dict(zip(result.column_names, values)) for values in result.result_rows]
    counts = _is_count(prompt) and _is_count(completion)
    if counts and prompt + completion <= BOUND:
        assert row["cost_status"] == "priced" and row["usage_source"] == "provider"
        assert (row["input_tokens"], row["output_tokens"]) == (prompt, completion)
        want = oracle.cost(Expected(prompt, completion), "gpt-4o-mini-2024-07-18", "openai")
        assert row["cost_usd"] == want.quantize(Decimal("1e-12"), rounding=ROUND_HALF_EVEN)
    elif counts:
        assert row["cost_status"] == "invalid" and row["cost_usd"] is None
        assert (row["input_tokens"], row["output_tokens"]) == (0, 0)
    else:
        # Not a count: the usage is unusable and counted from the text instead.
        assert row["cost_status"] == "estimated" and row["usage_source"] == "estimated"
        assert row["cost_usd"] is not None and row["output_tokens"] > 0


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(input_tokens=_usage_values, output_tokens=_usage_values, stream=st.booleans())
@example(input_tokens=2**64 - 1, output_tokens=20, stream=True)
@example(input_tokens=250_000, output_tokens=20, stream=False)  # the catalog's tier above 200,000 input tokens
@example(input_tokens=8, output_tokens="seven", stream=True)
@example(input_tokens=8, output_tokens=-1, stream=True)
@example(input_tokens=9_999_981, output_tokens=None, stream=True)  # the estimated output crosses the bound
@example(input_tokens=None, output_tokens="0", stream=True)  # the stream's models read "0" as 0
@example(input_tokens=False, output_tokens=False, stream=False)  # a whole message keeps false
def test_any_anthropic_usage_value_is_an_exact_priced_row_or_not_labelled_priced(ant, sink, oracle, row_table,
                                                                                 input_tokens, output_tokens, stream):
    sink.clear()
    # The Anthropic SDK does not coerce: the values that reach us are the wire JSON's.
    headers = usage(input_tokens=input_tokens, output_tokens=output_tokens)
    sent = json.loads(headers[USAGE_HEADER])
    # What the SDK reports is what otel-margin reads: its stream events are validated models, which
    # parse JSON true/false and "0" as numbers (pydantic's lax mode); its whole messages keep the
    # wire values. The expectations follow what it reported.
    if stream:
        reported = {}
        for event in ant.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES, stream=True,
                                         extra_headers=headers):
            if event.type == "message_start":
                reported["input_tokens"] = event.message.usage.input_tokens
            elif event.type == "message_delta":
                reported["output_tokens"] = event.usage.output_tokens
    else:
        message = ant.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES, extra_headers=headers)
        reported = {"input_tokens": message.usage.input_tokens, "output_tokens": message.usage.output_tokens}
    span = sink.one_llm_span()
    row_table.command("TRUNCATE TABLE rows")
    row_table.raw_insert("rows", column_names=list(COLUMN_NAMES), fmt=FORMAT,
                         insert_block=encode_rows([span_to_row(span, service_name="svc")]).body)
    result = row_table.query("SELECT * FROM rows")
    (row,) = [dict(zip(result.column_names, values)) for values in result.result_rows]
    given_in, given_out = reported.get("input_tokens"), reported.get("output_tokens")
    counts = _is_count(given_in) and _is_count(given_out)
    if counts and given_in + given_out <= BOUND:
        assert row["cost_status"] == "priced" and row["usage_source"] == "provider"
        assert (row["input_tokens"], row["output_tokens"]) == (given_in, given_out)
        want = oracle.cost(Expected(given_in, given_out), "claude-sonnet-4-5", "anthropic")
        assert row["cost_usd"] == want.quantize(Decimal("1e-12"), rounding=ROUND_HALF_EVEN)
    elif counts:
        assert row["cost_status"] == "invalid" and row["cost_usd"] is None
        assert (row["input_tokens"], row["output_tokens"]) == (0, 0)
    elif row["cost_status"] == "invalid":
        # A readable input count plus the estimated output (64 tokens at most) is over the bound.
        assert _is_count(given_in) and given_in + 64 > BOUND and row["cost_usd"] is None
    else:
        assert row["cost_status"] == "estimated" and row["usage_source"] == "estimated"
        assert row["cost_usd"] is not None and row["output_tokens"] > 0
