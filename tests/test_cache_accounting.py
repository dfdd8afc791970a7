"""The cache's own cost: a provider embedder through the user's client, recorded, attributed and netted once.

Real SDK against the stand-in, real chDB: the embedding calls are rows of their own (counted as
cost by the margin views), the calls that looked up carry ``cache_cost_usd``, and the guardrails
query nets it from what the hits avoided, to the last decimal.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from chdb_fixtures import chdb_client, chdb_path, database  # noqa: F401 - fixtures
from otel_margin import attribute
from otel_margin import attributes as attr
from otel_margin.analysis import margin
from otel_margin.exporters.rows import COLUMN_NAMES, FORMAT, encode_rows, span_to_row
from otel_margin.guardrail_calls import guardrail_calls
from otel_margin.plugins.cache import semantic
from otel_margin.plugins.cache.embedder import openai_embedder
from otel_margin.standin import openai_client
from tests.test_cache_plugin import cache, server, spans  # noqa: F401 - shared fixtures

POLICY = """
[plugins.cache]
store = "memory"

[plugins.cache.features.support]
ttl_seconds = 600
semantic = true
similarity = 0.95
"""
QUESTION = "How do I reset my password?"


@pytest.fixture()
def provider_embedded_cache(server, cache):  # noqa: F811
    """The semantic cache embedding through the user's own (instrumented) OpenAI client."""
    client = openai_client(server)
    semantic.set_embedder(openai_embedder(client, model="text-embedding-3-small"))
    cache(POLICY)
    yield client
    semantic.set_embedder(None)


def ask(client, content, customer="acme"):
    with attribute(feature="support", customer=customer):
        return client.chat.completions.create(model="gpt-4o-mini", temperature=0,
                                              messages=[{"role": "user", "content": content}])


def ask_twice(client):
    """A miss, then a semantic hit: the same words as text blocks are another exact key, the same meaning."""
    ask(client, QUESTION)
    ask(client, [{"type": "text", "text": QUESTION}])


def store(chdb_client, database, finished):  # noqa: F811
    rows = [span_to_row(span, service_name="svc") for span in finished]
    chdb_client.raw_insert(f"{database}.llm_calls", column_names=list(COLUMN_NAMES), fmt=FORMAT,
                           insert_block=encode_rows(rows).body)


def usd(span, name):
    return Decimal(span.attributes[name])


def test_the_embedding_is_the_caches_own_call_attributed_to_the_feature_that_looked_up(
    server, spans, provider_embedded_cache  # noqa: F811
):
    requests = len(server.requests)
    ask_twice(provider_embedded_cache)
    embed_1, miss, embed_2, hit = spans()[-4:]
    assert [r.path for r in server.requests[requests:]] == ["/v1/embeddings", "/v1/chat/completions", "/v1/embeddings"]
    for embedding in (embed_1, embed_2):
        assert embedding.attributes[attr.GEN_AI_OPERATION_NAME] == "embeddings"
        assert embedding.attributes[attr.MARGIN_ORCHESTRATION_BY] == "cache"
        assert (embedding.attributes[attr.MARGIN_FEATURE], embedding.attributes[attr.MARGIN_CUSTOMER]) == ("support", "acme")
        assert embedding.attributes[attr.MARGIN_COST_STATUS] == "priced" and usd(embedding, attr.MARGIN_COST_USD) > 0
        assert attr.MARGIN_CACHE_RESULT not in embedding.attributes  # no guardrail ran on it: not a lookup
    assert (miss.attributes[attr.MARGIN_CACHE_RESULT], hit.attributes[attr.MARGIN_CACHE_RESULT]) == ("miss", "semantic")
    # the cache's cost on the call that looked up is the embedding row's cost, as priced
    assert miss.attributes[attr.MARGIN_CACHE_COST_USD] == embed_1.attributes[attr.MARGIN_COST_USD]
    assert hit.attributes[attr.MARGIN_CACHE_COST_USD] == embed_2.attributes[attr.MARGIN_COST_USD]
    assert usd(hit, attr.MARGIN_SAVED_USD) == usd(miss, attr.MARGIN_COST_USD)  # gross: what the hit avoided


def test_dollars_avoided_are_net_of_the_caches_cost_and_nothing_is_counted_twice(
    server, spans, provider_embedded_cache, chdb_client, database  # noqa: F811
):
    ask_twice(provider_embedded_cache)
    finished = spans()[-4:]
    embed_1, miss, embed_2, hit = finished
    store(chdb_client, database, finished)
    today = datetime.now(timezone.utc).date()
    start, end = today - timedelta(days=1), today + timedelta(days=1)

    (row,) = margin.guardrails(chdb_client, start=start, end=end, database=database)
    embeddings = usd(embed_1, attr.MARGIN_COST_USD) + usd(embed_2, attr.MARGIN_COST_USD)
    assert (row.feature, row.cache_lookups, row.exact_hits, row.semantic_hits) == ("support", 2, 0, 1)
    assert row.cache_saved_usd == usd(miss, attr.MARGIN_COST_USD)
    assert row.cache_cost_usd == embeddings
    assert row.cache_net_saved_usd == usd(miss, attr.MARGIN_COST_USD) - embeddings  # exact Decimal
    assert row.hit_rate == Decimal("0.5")

    # The margin counts each embedding once, as its own row; never the calls' cache_cost_usd too.
    (total,) = margin.margin_by(chdb_client, level="all", start=start, end=end, database=database)
    assert total.calls == 4
    assert total.cost_usd == usd(miss, attr.MARGIN_COST_USD) + embeddings + usd(hit, attr.MARGIN_COST_USD)
    assert usd(hit, attr.MARGIN_COST_USD) == 0


def test_a_call_made_inside_a_guardrail_block_hands_its_priced_cost_back_before_it_returns(server, spans):  # noqa: F811
    from otel_margin.pluginhost import pm

    assert "margin_record" not in pm.hooks_in_use()  # else every call is priced before it returns anyway
    client = openai_client(server)
    with attribute(feature="support", customer="acme"), guardrail_calls("cache") as spent:
        client.embeddings.create(model="text-embedding-3-small", input="one")
        client.embeddings.create(model="text-embedding-3-small", input="two two two")
    calls, total = spent.calls, spent.total_usd  # read before anything waits for the finisher thread
    first, second = spans()[-2:]
    assert calls == 2
    assert total == usd(first, attr.MARGIN_COST_USD) + usd(second, attr.MARGIN_COST_USD) > 0
    with attribute(feature="support", customer="acme"):
        client.embeddings.create(model="text-embedding-3-small", input="outside")
    assert attr.MARGIN_ORCHESTRATION_BY not in spans()[-1].attributes
    assert spent.calls == 2


def test_the_caches_cost_is_a_metric_per_feature_beside_what_it_saved(server, cache, instrumented, sink):  # noqa: F811
    client = openai_client(server)
    semantic.set_embedder(openai_embedder(client, model="text-embedding-3-small"))
    try:
        cache(POLICY)
        ask_twice(client)
    finally:
        semantic.set_embedder(None)
    spans = sink.llm_spans()
    embedded = sum(usd(s, attr.MARGIN_COST_USD) for s in spans if attr.MARGIN_ORCHESTRATION_BY in s.attributes)
    saved = sum(usd(s, attr.MARGIN_SAVED_USD) for s in spans if attr.MARGIN_SAVED_USD in s.attributes)
    points = sink.metrics()
    ((cost_point,),) = [m.data.data_points for m in points[attr.METRIC_CACHE_COST]]
    assert dict(cost_point.attributes) == {attr.MARGIN_FEATURE: "support"}
    assert embedded > 0 and cost_point.value == pytest.approx(float(embedded), rel=1e-12)
    ((saved_point,),) = [m.data.data_points for m in points[attr.METRIC_SAVED]]
    assert saved_point.value == pytest.approx(float(saved), rel=1e-12)
