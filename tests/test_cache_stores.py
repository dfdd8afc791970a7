"""The response cache's key and stores: tenant isolation, parameters in the key, TTL, byte bounds, fail-open."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_margin.plugins.cache.key import NotCacheable, Scope, cache_key, namespace, nondeterminism
from otel_margin.plugins.cache.stores import FailOpen, HostStore, MemoryStore, RedisStore
from tests.redis_server import redis_server

BASE = {"model": "gpt-4o-mini", "temperature": 0, "messages": [{"role": "user", "content": "What is 2 + 2?"}]}


def key_of(params=BASE, customer="acme", feature="qa", scope=Scope.CUSTOMER, **kwargs):
    return cache_key(scope=scope, customer=customer, feature=feature, provider="openai",
                     api="chat.completions", params=params, **kwargs)


# --- the key ---------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)
param_names = st.text(min_size=1, max_size=12).filter(lambda n: n != "timeout")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(name=param_names, before=json_values, after=json_values)
def test_every_parameter_that_differs_changes_the_key(name, before, after):
    # Equal JSON values must key alike; any difference a provider could read must not.
    first = key_of({**BASE, name: before}, allow_nondeterministic=True)
    second = key_of({**BASE, name: after}, allow_nondeterministic=True)
    same = json.dumps(before, sort_keys=True) == json.dumps(after, sort_keys=True) and _same_types(before, after)
    assert (first == second) == same


def _same_types(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_types(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_types(x, y) for x, y in zip(a, b))
    return True


def test_timeout_and_not_given_values_leave_the_key_alone():
    assert key_of({**BASE, "timeout": 3}) == key_of()
    assert key_of({**BASE, "stream": True}) != key_of()  # a hit replays the response's own shape
    assert key_of({**BASE, "max_tokens": openai.NOT_GIVEN}) == key_of()
    assert key_of({**BASE, "max_tokens": 10}) != key_of()


def test_one_and_one_point_zero_are_different_requests():
    assert key_of({**BASE, "top_p": 1}) != key_of({**BASE, "top_p": 1.0})


def test_provider_surface_and_model_are_in_the_key():
    anthropic = cache_key(scope=Scope.CUSTOMER, customer="acme", feature="qa", provider="anthropic",
                          api="chat.completions", params=BASE)
    responses = cache_key(scope=Scope.CUSTOMER, customer="acme", feature="qa", provider="openai",
                          api="responses", params=BASE)
    assert len({key_of().digest, anthropic.digest, responses.digest, key_of({**BASE, "model": "gpt-4o"}).digest}) == 4


@pytest.mark.parametrize(
    ("scope", "customer", "feature"),
    [(Scope.CUSTOMER, None, "qa"), (Scope.CUSTOMER_FEATURE, "acme", None), (Scope.FEATURE, "acme", None)],
)
def test_a_scope_without_its_tenant_is_not_cached(scope, customer, feature):
    with pytest.raises(NotCacheable, match="no (customer|feature)"):
        key_of(scope=scope, customer=customer, feature=feature)


def test_global_scope_shares_across_customers_and_the_others_do_not():
    assert key_of(customer="a", scope=Scope.GLOBAL) == key_of(customer="b", scope=Scope.GLOBAL)
    for scope in (Scope.CUSTOMER, Scope.CUSTOMER_FEATURE):
        assert key_of(customer="a", scope=scope).store_key != key_of(customer="b", scope=scope).store_key
    assert key_of(feature="x", scope=Scope.FEATURE) != key_of(feature="y", scope=Scope.FEATURE)


def test_namespace_cannot_be_forged_by_separators_in_names():
    # A customer named like another scope's parts must not share its namespace.
    assert namespace(Scope.CUSTOMER_FEATURE, customer="a", feature="b") != namespace(
        Scope.CUSTOMER, customer='a", "b', feature=None)
    assert namespace(Scope.CUSTOMER, customer="a:b", feature=None) != namespace(
        Scope.CUSTOMER_FEATURE, customer="a", feature="b")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"temperature": None}, "temperature is not set"),
        ({"temperature": 0.7}, "temperature is 0.7"),
        ({"n": 3}, "several sampled"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                       {"role": "user", "content": "c"}]}, "several turns"),
        ({"messages": [{"role": "tool", "content": "42", "tool_call_id": "x"}]}, "tool results"),
        ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x"}]}]}, "tool results"),
    ],
)
def test_unrepeatable_requests_are_not_cached_unless_allowed(change, reason):
    params = {**BASE, **change}
    assert reason in nondeterminism(params)
    with pytest.raises(NotCacheable, match=reason.split()[0]):
        key_of(params)
    assert key_of(params, allow_nondeterministic=True).digest


def test_a_parameter_without_a_data_form_is_not_cached():
    with pytest.raises(NotCacheable, match="messages are not a list"):
        key_of({**BASE, "messages": (m for m in BASE["messages"])})
    with pytest.raises(NotCacheable, match="generator"):
        key_of({**BASE, "messages": (m for m in BASE["messages"])}, allow_nondeterministic=True)


# --- the stores --------------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_memory_store_honours_ttl_and_the_byte_bound_evicting_least_recently_used():
    clock = Clock()
    store = MemoryStore(max_bytes=30, clock=clock)
    store.put("a", b"x" * 10, ttl_s=60)
    store.put("b", b"y" * 10, ttl_s=5)
    store.put("c", b"z" * 10, ttl_s=60)
    assert store.get("a") == b"x" * 10  # a is now the most recently used
    store.put("d", b"w" * 10, ttl_s=60)  # over 30 bytes: b, the least recently used, goes
    assert store.get("b") is None and store.get("c") == b"z" * 10
    assert store.stats().bytes == 30 and store.stats().evictions == 1
    clock.now += 61
    assert store.get("a") is None and store.stats().entries == 2
    store.put("huge", b"h" * 31, ttl_s=60)  # larger than the bound: not stored, nothing evicted
    assert store.get("huge") is None and store.stats().evictions == 1


def test_host_store_is_shared_by_the_processes_of_a_host(tmp_path):
    directory = str(tmp_path / "cache")
    writer = (
        "import sys; from otel_margin.plugins.cache.stores import HostStore; "
        "s = HostStore(sys.argv[1]); s.put('k', b'from another process', ttl_s=60); s.close()"
    )
    subprocess.run([sys.executable, "-c", writer, directory], check=True, timeout=60)
    store = HostStore(directory)
    try:
        assert store.get("k") == b"from another process"
        store.put("short", b"v", ttl_s=0.2)
        assert store.get("short") == b"v"
        time.sleep(0.3)
        assert store.get("short") is None
    finally:
        store.close()


def test_host_store_stays_within_its_byte_bound(tmp_path):
    store = HostStore(str(tmp_path / "cache"), max_bytes=200_000)
    try:
        for i in range(200):
            store.put(f"k{i}", bytes(5_000), ttl_s=60)
        stats = store.stats()
        assert stats.bytes <= 200_000 + 5_000 * 10  # diskcache culls ten at a time past the limit
        assert store.get("k199") == bytes(5_000) and store.get("k0") is None
    finally:
        store.close()


def test_redis_store_is_shared_by_replicas_and_honours_ttl():
    with redis_server() as server:
        first, second = RedisStore(server.url), RedisStore(server.url)
        first.put("k", b"written by replica 1", ttl_s=60)
        assert second.get("k") == b"written by replica 1"
        first.put("short", b"v", ttl_s=0.1)
        time.sleep(0.25)
        assert second.get("short") is None
        assert second.stats().entries == 1


def test_redis_down_fails_open_within_the_timeout_then_recovers(caplog):
    with redis_server() as server:
        store = FailOpen(RedisStore(server.url, timeout_s=0.05), "redis", pause_s=0.1)
        store.put("k", b"v", ttl_s=60)
        server.stop()
        started = time.monotonic()
        assert store.get("k") is None and store.down
        assert store.get("k") is None  # skipped during the pause: no second timeout
        assert store.errors == 1 and store.skipped == 1
        assert time.monotonic() - started < 5  # bounded by the timeouts, not a hang
        server.start()  # an empty server, as after a restart
        time.sleep(0.15)
        store.put("k", b"again", ttl_s=60)
        assert not store.down and store.get("k") == b"again"
    messages = [r.getMessage() for r in caplog.records if "otel-margin cache" in r.getMessage()]
    assert len(messages) == 2 and "failed" in messages[0] and "is back" in messages[1]


# --- tenant isolation, every store -------------------------------------------------------------------

tenants = st.sampled_from(["acme", "globex", "initech", "Acme", "acme ", "a:b", ""])
features = st.sampled_from(["qa", "summarize", None])
requests = st.fixed_dictionaries({
    "model": st.sampled_from(["gpt-4o-mini", "gpt-4o"]),
    "temperature": st.just(0),
    "messages": st.lists(st.fixed_dictionaries({"role": st.just("user"), "content": st.sampled_from(["hi", "2+2?"])}),
                         min_size=1, max_size=1),
})
calls = st.lists(st.tuples(tenants, features, st.sampled_from([Scope.CUSTOMER, Scope.CUSTOMER_FEATURE]), requests),
                 min_size=1, max_size=12)


def _check_isolation(store, calls):
    written = {}
    for customer, feature, scope, params in calls:
        try:
            key = key_of(params, customer=customer, feature=feature, scope=scope)
        except NotCacheable:
            continue
        value = json.dumps([key.namespace, key.digest]).encode()
        store.put(key.store_key, value, ttl_s=60)
        written[key.store_key] = key.namespace
    for customer, feature, scope, params in calls:
        try:
            key = key_of(params, customer=customer, feature=feature, scope=scope)
        except NotCacheable:
            continue
        found = store.get(key.store_key)
        assert found is not None
        assert json.loads(found)[0] == key.namespace  # never another tenant's entry


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=calls)
def test_no_tenant_ever_reads_another_tenants_entry_memory(calls):
    _check_isolation(MemoryStore(), calls)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=calls)
def test_no_tenant_ever_reads_another_tenants_entry_host(tmp_path_factory, calls):
    store = HostStore(str(tmp_path_factory.mktemp("cache")))
    try:
        _check_isolation(store, calls)
    finally:
        store.close()


def test_no_tenant_ever_reads_another_tenants_entry_redis():
    with redis_server() as server:
        @settings(max_examples=25, deadline=None)
        @given(calls=calls)
        def check(calls):
            store = RedisStore(server.url)
            store._redis.flushdb()
            _check_isolation(store, calls)

        check()
