"""The built-in exact cache through the real SDKs: hits of the right type on every surface, tenant-safe, fail-open."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import anthropic
import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_margin import LimitDecision, MarginLimitExceeded, attribute, flush, hookimpl
from otel_margin import attributes as attr
from otel_margin.instrumentation.anthropic import AnthropicMarginInstrumentor
from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor
from otel_margin.pluginhost import configure, load_plugins, pm
from otel_margin.plugins.cache import plugin as cache_plugin
from otel_margin.plugins.cache.plugin import CacheSettingsError, ExactCache
from otel_margin.policy import parse_policy
from otel_margin.standin import StandInServer, anthropic_client, openai_client
from tests.redis_server import redis_server

CHAT = [{"role": "user", "content": "What is our gross margin?"}]
POLICY = """
[plugins.cache]
store = "{store}"

[plugins.cache.features.qa]
ttl_seconds = 600

[plugins.cache.features.chat]
ttl_seconds = 600
allow_nondeterministic = true
"""


@pytest.fixture(scope="module")
def server():
    with StandInServer() as running:
        yield running


@pytest.fixture()
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentors = (OpenAIMarginInstrumentor(), AnthropicMarginInstrumentor())
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=provider)

    def finished():
        flush()
        return [s for s in exporter.get_finished_spans() if attr.GEN_AI_OPERATION_NAME in (s.attributes or {})]

    yield finished
    flush()
    for instrumentor in instrumentors:
        instrumentor.uninstrument()


@pytest.fixture()
def cache():
    """Configure the cache from a policy text; unconfigured after the test."""
    load_plugins()
    assert pm.get_plugin("cache") is cache_plugin  # found through the entry point, as a third party's

    def configured(text=POLICY.format(store="memory")):
        cache_plugin.margin_configure(policy=parse_policy(text))
        return pm.get_plugin(ExactCache.NAME)

    yield configured
    flush()
    if pm.get_plugin("cache") is None:  # a test saw it disabled
        pm.register(cache_plugin, name="cache")
    cache_plugin.margin_configure(policy=parse_policy(""))


def ask(client, customer="acme", feature="qa", **params):
    with attribute(feature=feature, customer=customer):
        return client.chat.completions.create(**{"model": "gpt-4o-mini", "messages": CHAT, "temperature": 0, **params})


def test_an_identical_request_is_served_without_the_provider_and_priced_as_avoided(server, spans, cache):
    cache()
    client = openai_client(server)
    first = ask(client)
    before = len(server.requests)
    second = ask(client)
    assert len(server.requests) == before
    assert type(second) is type(first) and second.model_dump() == first.model_dump()
    miss, hit = spans()[-2:]
    assert miss.attributes[attr.MARGIN_CACHE_RESULT] == "miss"
    assert hit.attributes[attr.MARGIN_CACHE_RESULT] == "exact"
    assert hit.attributes[attr.MARGIN_SAVED_USD] == miss.attributes[attr.MARGIN_COST_USD]
    assert Decimal(miss.attributes[attr.MARGIN_COST_USD]) > 0
    assert Decimal(hit.attributes[attr.MARGIN_COST_USD]) == 0
    assert hit.attributes[attr.MARGIN_USAGE_SOURCE] == "cache"
    assert hit.attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 0


def test_another_tenant_or_another_parameter_is_a_miss(server, spans, cache):
    cache()
    client = openai_client(server)
    ask(client, customer="acme")
    before = len(server.requests)
    ask(client, customer="globex")
    ask(client, customer="acme", max_tokens=7)
    ask(client, customer="acme", feature="other")  # not a cached feature
    assert len(server.requests) == before + 3
    results = [s.attributes.get(attr.MARGIN_CACHE_RESULT) for s in spans()[-3:]]
    assert results == ["miss", "miss", None]


def test_unrepeatable_requests_are_off_and_never_stored(server, spans, cache):
    cache()
    client = openai_client(server)
    ask(client, temperature=0.8)
    before = len(server.requests)
    ask(client, temperature=0.8)
    assert len(server.requests) == before + 1
    assert spans()[-1].attributes[attr.MARGIN_CACHE_RESULT] == "off"


def test_provider_errors_are_not_cached(server, spans, cache):
    cache()
    client = openai_client(server)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            ask(client, extra_headers={"x-standin-scenario": "error-429"})
    assert [s.attributes[attr.MARGIN_CACHE_RESULT] for s in spans()[-2:]] == ["miss", "miss"]


def test_a_cached_stream_replays_chunk_for_chunk_as_the_same_type(server, spans, cache):
    cache()
    client = openai_client(server)
    first = ask(client, stream=True)
    assert isinstance(first, openai.Stream)
    live = [c.model_dump() for c in first]
    before = len(server.requests)
    second = ask(client, stream=True)
    assert isinstance(second, openai.Stream)
    assert [c.model_dump() for c in second] == live and len(server.requests) == before
    assert spans()[-1].attributes[attr.MARGIN_CACHE_RESULT] == "exact"


def test_async_and_raw_surfaces_hit(server, spans, cache):
    cache()

    async def run():
        client = openai_client(server, async_=True)
        with attribute(feature="qa", customer="acme"):
            first = await client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, temperature=0, stream=True)
            live = [c.model_dump() async for c in first]
            second = await client.chat.completions.create(model="gpt-4o-mini", messages=CHAT, temperature=0, stream=True)
            assert isinstance(second, openai.AsyncStream)
            return live, [c.model_dump() async for c in second]

    live, replayed = asyncio.run(run())
    assert live == replayed
    client = openai_client(server)
    with attribute(feature="qa", customer="acme"):
        first = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=CHAT, temperature=0)
        before = len(server.requests)
        second = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=CHAT, temperature=0)
    assert len(server.requests) == before
    assert second.parse().model_dump() == first.parse().model_dump()
    assert second.headers["x-request-id"] == first.headers["x-request-id"]


def test_anthropic_stream_manager_hits(server, spans, cache):
    cache()
    client = anthropic_client(server)

    def run():
        with attribute(feature="chat", customer="acme"):  # this SDK's stream() takes no temperature
            with client.messages.stream(model="claude-haiku-4-5", max_tokens=40, messages=CHAT) as s:
                return [e.model_dump() for e in s], s.get_final_message().model_dump()

    live = run()
    before = len(server.requests)
    assert run() == live and len(server.requests) == before
    assert spans()[-1].attributes[attr.MARGIN_CACHE_RESULT] == "exact"
    assert isinstance(client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=CHAT),
                      anthropic.types.Message)


def test_redis_store_is_shared_fails_open_and_recovers(server, spans, cache, caplog):
    with redis_server() as redis:
        policy = POLICY.format(store=redis.url)
        cache(policy)
        client = openai_client(server)
        first = ask(client)
        cache(policy)  # another replica: a new connection, nothing in memory
        before = len(server.requests)
        assert ask(client).model_dump() == first.model_dump() and len(server.requests) == before
        redis.stop()
        with caplog.at_level(logging.WARNING):
            assert ask(client).model_dump()["choices"]  # the provider answers while Redis is down
        assert len(server.requests) == before + 1
        assert any("failed" in r.getMessage() for r in caplog.records)
        redis.start()
        cache(policy)
        ask(client)
        before = len(server.requests)
        ask(client)
        assert len(server.requests) == before  # stored again after the restart, and served


def test_bad_settings_name_the_line_and_disable_only_the_cache(server, spans, cache, caplog):
    text = '[plugins.cache]\nstore = "memory"\n\n[plugins.cache.features.qa]\nttl_seconds = -5\n'
    with pytest.raises(CacheSettingsError, match=r"otel-margin.toml line 4: .*ttl_seconds = -5"):
        cache(text)
    with caplog.at_level(logging.ERROR):
        configure(parse_policy(text))
    assert any("plugin 'cache' is disabled" in r.getMessage() for r in caplog.records)
    assert pm.get_plugin(ExactCache.NAME) is None
    client = openai_client(server)
    assert ask(client).choices


def test_the_report_shows_hits_and_the_dollars_they_avoided(server, spans, cache, tmp_path, monkeypatch, capsys):
    import json

    from otel_margin.cli import main
    from otel_margin.exporters.clickhouse import ClickHouseSpanExporter

    cache()
    client = openai_client(server)
    for customer in ("acme", "acme", "acme", "globex"):
        ask(client, customer=customer)
    ask(client, temperature=0.5)  # not cacheable: off, not a lookup
    finished = spans()[-5:]
    first_cost = Decimal(finished[0].attributes[attr.MARGIN_COST_USD])
    endpoint, spool = f"chdb://{tmp_path / 'chdb'}", str(tmp_path / "spool")
    exporter = ClickHouseSpanExporter(endpoint=endpoint, spool_dir=spool, drain_interval=0.1)
    exporter.export(finished)
    exporter.shutdown()
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_SPOOL_DIR", spool)
    assert main(["report", "--since", "1", "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["guardrails"]
    assert (row["feature"], row["calls"], row["cache_lookups"], row["exact_hits"]) == ("qa", 5, 4, 2)
    assert Decimal(row["hit_rate"]) == Decimal("0.5") and row["cache_hint"] == ""
    assert Decimal(row["cache_saved_usd"]) == 2 * first_cost
    assert Decimal(row["cache_cost_usd"]) == 0 and Decimal(row["cache_net_saved_usd"]) == 2 * first_cost  # exact: no embedding
    assert main(["report", "--since", "1"]) == 0
    printed = capsys.readouterr().out
    assert "Guardrails" in printed and "cache net $" in printed


@pytest.mark.parametrize(("rate", "hint"), [("0.1499", "refine"), ("0.15", ""), ("0.5", ""), ("0.5001", "longer TTLs")])
def test_the_tuning_hint_follows_the_methods_thresholds(rate, hint):
    from otel_margin.analysis.margin import _cache_hint

    assert (hint in _cache_hint(Decimal(rate))) and (bool(_cache_hint(Decimal(rate))) == bool(hint))


class SpendBudget:
    """Over budget: blocks calls that would cost money, lets free cached answers through."""

    @hookimpl
    def margin_limit_check(self, call):
        if call.notes.get("cache.hit"):
            return None
        return LimitDecision(action="block", limit="daily budget", current_spend_usd=Decimal("10.5"),
                             limit_usd=Decimal("10"))


class RateLimit:
    @hookimpl
    def margin_limit_check(self, call):
        return LimitDecision(action="block", limit="10 requests a minute")


class Cap:
    @hookimpl
    def margin_limit_check(self, call):
        return LimitDecision(action="cap", limit="output cap", max_output_tokens=5)


def test_a_spend_budget_lets_a_free_hit_through_and_a_rate_limit_may_not(server, spans, cache):
    cache()
    client = openai_client(server)
    first = ask(client)
    pm.register(SpendBudget(), name="budget")
    try:
        assert ask(client).model_dump() == first.model_dump()  # cached: costs nothing, allowed
        with pytest.raises(MarginLimitExceeded, match=r"current spend \$10.5 of \$10"):
            ask(client, customer="globex")  # a miss would spend
    finally:
        pm.unregister(name="budget")
    blocked = spans()[-1]
    assert blocked.attributes[attr.MARGIN_LIMIT_ACTION] == "block"
    assert (blocked.attributes[attr.MARGIN_LIMIT_SPEND_USD], blocked.attributes[attr.MARGIN_LIMIT_USD]) == ("10.5", "10")
    pm.register(RateLimit(), name="rate")
    try:
        with pytest.raises(MarginLimitExceeded, match="10 requests a minute"):
            ask(client)  # a hit, still over the rate
    finally:
        pm.unregister(name="rate")


def test_a_cap_is_not_applied_to_a_hit_and_a_capped_miss_is_not_stored(server, spans, cache):
    cache()
    client = openai_client(server)
    full = ask(client)
    pm.register(Cap(), name="cap")
    try:
        assert ask(client).model_dump() == full.model_dump()  # the stored, uncapped answer
        hit = spans()[-1]
        assert hit.attributes[attr.MARGIN_LIMIT_ACTION] == "allow"
        assert attr.MARGIN_LIMIT_MAX_OUTPUT_TOKENS not in hit.attributes
        ask(client, customer="globex")
        assert server.requests[-1].json["max_completion_tokens"] == 5
        assert spans()[-1].attributes[attr.MARGIN_LIMIT_MAX_OUTPUT_TOKENS] == 5
    finally:
        pm.unregister(name="cap")
    before = len(server.requests)
    ask(client, customer="globex")  # the capped answer was not stored under the uncapped request
    assert len(server.requests) == before + 1


def test_hits_and_dollars_avoided_are_metrics_per_feature(server, cache):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader, exporter = InMemoryMetricReader(), InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    instrumentors = (OpenAIMarginInstrumentor(), AnthropicMarginInstrumentor())
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        cache()
        client = openai_client(server)
        for _ in range(3):
            ask(client)
        ask(client, temperature=0.9)
        flush()
    finally:
        for instrumentor in instrumentors:
            instrumentor.uninstrument()
    points = {
        metric.name: [(dict(p.attributes), getattr(p, "value", None)) for p in metric.data.data_points]
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    requests = {a[attr.MARGIN_CACHE_RESULT]: v for a, v in points[attr.METRIC_CACHE_REQUESTS]}
    assert requests == {"miss": 1, "exact": 2, "off": 1}
    miss = exporter.get_finished_spans()[0]
    assert miss.attributes[attr.MARGIN_CACHE_RESULT] == "miss"
    ((labels, saved),) = points[attr.METRIC_SAVED]
    assert labels == {attr.MARGIN_FEATURE: "qa", attr.MARGIN_SAVED_BY: "cache"}
    assert saved == pytest.approx(2 * float(miss.attributes[attr.MARGIN_COST_USD]), rel=1e-12)
