"""The request fingerprint (``margin.request.hash`` → ``llm_calls.request_hash``).

Real SDK calls to the stand-in: an identical request gets the identical fingerprint whoever asks
(tenant-agnostic), any difference in what is asked changes it; the exporter stores it in chDB as
the UInt64 it spells. The fingerprint agrees with the response cache's digest (the cache's key is
reused when there is one), and a malformed attribute from outside is stored as 0, counted.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import clickhouse_connect
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_margin import attribute
from otel_margin import attributes as a
from otel_margin.call import Attribution, LLMCall
from otel_margin.exporters.clickhouse import ClickHouseSpanExporter
from otel_margin.exporters.rows import COLUMN_NAMES, span_to_row
from otel_margin.plugins.cache.key import CacheKey, Scope, cache_key
from otel_margin.request_hash import request_hash
from otel_margin.standin import openai_client

from chdb_fixtures import chdb_client, chdb_path, database  # noqa: F401 - fixtures
from test_collector import traces  # noqa: F401 - fixture

MESSAGES = [{"role": "user", "content": "Summarise the refund policy."}]


@pytest.fixture(autouse=True)
def _instrumented(instrumented_module: Any) -> None:
    """Both instrumentors on for the module."""


def _hashes(sink: Any) -> list[str | None]:
    return [span.attributes.get(a.MARGIN_REQUEST_HASH) for span in sink.llm_spans()]


def test_identical_requests_share_a_fingerprint_whoever_asks_and_differences_change_it(standin_server, sink, tmp_path):
    client = openai_client(standin_server)
    with attribute(feature="summarize", customer="acme"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0)
    with attribute(feature="search", customer="globex"):  # another tenant, the same request
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.5)
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES, temperature=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Other."}],
                                   temperature=0)
    first, same, warmer, bigger, other = _hashes(sink)
    assert first is not None and len(first) == 16 and int(first, 16) >= 0
    assert same == first
    assert len({first, warmer, bigger, other}) == 4

    endpoint = f"chdb://{tmp_path / 'chdb'}"
    exporter = ClickHouseSpanExporter(endpoint=endpoint, spool_dir=str(tmp_path / "spool"), drain_interval=0.1)
    exporter.export(sink.llm_spans())
    exporter.shutdown()
    reader = clickhouse_connect.get_client(interface="chdb", path=str(tmp_path / "chdb"))
    try:
        stored = [row[0] for row in reader.query(
            "SELECT request_hash FROM otel_margin.llm_calls ORDER BY timestamp").result_rows]
    finally:
        reader.close()
    assert stored == [int(h, 16) for h in (first, same, warmer, bigger, other)]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(params=st.dictionaries(st.text(min_size=1, max_size=10), _json, max_size=6),
       provider=st.sampled_from(["openai", "anthropic"]), api=st.sampled_from(["chat.completions", "messages"]),
       customer=st.text(min_size=1, max_size=10))
def test_the_fingerprint_is_the_cache_digest_without_the_tenant(params, provider, api, customer):
    """Computed alone or taken from the cache's key, the fingerprint is the same: 64 bits of its digest."""
    call = LLMCall(provider=provider, operation="chat", request_model="m", params=dict(params),
                   attribution=Attribution(customer=customer), api=api)
    key = cache_key(scope=Scope.CUSTOMER, customer=customer, feature=None, provider=provider, api=api,
                    params=params, allow_nondeterministic=True)
    alone = request_hash(call)
    assert alone == key.digest[:16]
    call.notes["cache.key"] = key
    assert request_hash(call) == alone
    reordered = LLMCall(provider=provider, operation="chat", request_model="m",
                        params=dict(reversed(list(params.items()))), attribution=Attribution(), api=api)
    assert request_hash(reordered) == alone  # the canonical form sorts keys: order never matters


def test_the_cache_key_is_reused_rather_than_hashed_again():
    digest = hashlib.sha256(b"anything").hexdigest()
    call = LLMCall(provider="openai", operation="chat", request_model="m", params={"messages": iter(())},
                   attribution=Attribution())
    assert request_hash(call) is None  # a generator has no canonical form
    call.notes["cache.key"] = CacheKey(namespace="x", digest=digest)
    assert request_hash(call) == digest[:16]


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(st.text(alphabet="0123456789abcdef", min_size=16, max_size=16),
                       st.text(max_size=20), st.integers(), st.none()))
def test_the_row_stores_what_the_attribute_spells_and_counts_the_rest(value):
    from opentelemetry.sdk.trace import ReadableSpan

    attributes = {a.GEN_AI_OPERATION_NAME: "chat"}
    if value is not None:
        attributes[a.MARGIN_REQUEST_HASH] = value
    problems: Counter[str] = Counter()
    row = span_to_row(ReadableSpan(name="chat m", attributes=attributes), service_name="svc", problems=problems)
    stored = dict(zip(COLUMN_NAMES, row))["request_hash"]
    valid = isinstance(value, str) and len(value) == 16 and set(value) <= set("0123456789abcdef")
    assert stored == (int(value, 16) if valid else 0)
    assert problems["request_hash:invalid"] == (0 if valid or value is None else 1)


def test_the_collector_view_reads_the_fingerprint_as_the_exporter_does(chdb_client, database, traces):
    from test_collector import LLM, write_spans

    from otel_margin import schema

    good = hashlib.sha256(b"request").hexdigest()[:16]
    values = [good, good.upper(), good[:15], "", "0x" + good[2:]]
    write_spans(chdb_client, traces, [(f"chat {i}", {**LLM, a.MARGIN_REQUEST_HASH: value}, "Unset")
                                      for i, value in enumerate(values)])
    db = schema.quote_identifier(database)
    stored = chdb_client.query(f"SELECT request_hash FROM {db}.llm_calls ORDER BY request_hash DESC").result_rows
    expected = []
    for value in values:
        problems: Counter[str] = Counter()
        from opentelemetry.sdk.trace import ReadableSpan

        row = span_to_row(ReadableSpan(name="chat", attributes={a.GEN_AI_OPERATION_NAME: "chat",
                                                                 a.MARGIN_REQUEST_HASH: value}),
                          service_name="svc", problems=problems)
        expected.append(dict(zip(COLUMN_NAMES, row))["request_hash"])
    assert [h for (h,) in stored] == sorted(expected, reverse=True)
    assert sorted(expected, reverse=True) == [int(good, 16), 0, 0, 0, 0]
