"""Attribution: explicit API > baggage > route mapping, per key; unattributed never dropped."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from otel_margin import attribute
from otel_margin.attribution import (
    ServerRouteTracker,
    current_attribution,
    feature_for_route,
)


def test_no_attribution_is_all_unset():
    resolved = current_attribution()
    assert (resolved.feature, resolved.customer, resolved.tier, resolved.cohort) == (None, None, None, None)
    assert resolved.source == "default"


def test_context_manager_sets_and_restores():
    with attribute(feature="summarize", customer="acme", tier="pro", cohort="2026-10"):
        resolved = current_attribution()
        assert (resolved.feature, resolved.customer, resolved.tier, resolved.cohort) == (
            "summarize", "acme", "pro", "2026-10",
        )
        assert resolved.source == "api"
    assert current_attribution().feature is None


def test_nesting_inner_wins_per_key():
    with attribute(feature="outer", customer="acme", tier="pro"):
        with attribute(feature="inner", cohort="c1"):
            resolved = current_attribution()
            assert (resolved.feature, resolved.customer, resolved.tier, resolved.cohort) == (
                "inner", "acme", "pro", "c1",
            )
        assert current_attribution().feature == "outer"
        assert current_attribution().cohort is None


def test_decorator_sync_and_reentrant():
    @attribute(feature="decorated", customer="globex")
    def work(depth: int) -> list[str | None]:
        here = [current_attribution().feature]
        return here + (work(depth - 1) if depth else [])

    assert work(2) == ["decorated"] * 3
    assert current_attribution().feature is None


async def test_decorator_async_isolated_between_tasks():
    @attribute(feature="a")
    async def task_a() -> str | None:
        await asyncio.sleep(0.01)
        return current_attribution().feature

    @attribute(feature="b")
    async def task_b() -> str | None:
        await asyncio.sleep(0)
        return current_attribution().feature

    assert await asyncio.gather(task_a(), task_b()) == ["a", "b"]


async def test_async_context_manager():
    async with attribute(customer="initech"):
        assert current_attribution().customer == "initech"
    assert current_attribution().customer is None


def test_threads_do_not_leak_into_each_other():
    seen: dict[str, str | None] = {}
    barrier = threading.Barrier(2)

    def run(name: str) -> None:
        with attribute(feature=name):
            barrier.wait()
            seen[name] = current_attribution().feature

    threads = [threading.Thread(target=run, args=(n,)) for n in ("t1", "t2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"t1": "t1", "t2": "t2"}


def test_baggage_supplies_keys_the_api_does_not():
    ctx = baggage.set_baggage("margin.feature", "from-baggage")
    ctx = baggage.set_baggage("margin.customer", "baggage-customer", ctx)
    ctx = baggage.set_baggage("margin.tier", "enterprise", ctx)
    token = context.attach(ctx)
    try:
        resolved = current_attribution()
        assert (resolved.feature, resolved.customer, resolved.tier) == (
            "from-baggage", "baggage-customer", "enterprise",
        )
        assert resolved.source == "baggage"
        with attribute(feature="explicit"):
            resolved = current_attribution()
            assert resolved.feature == "explicit"
            assert resolved.customer == "baggage-customer"
            assert resolved.source == "api"
    finally:
        context.detach(token)


def test_route_mapping_from_enclosing_server_span_is_lowest_precedence():
    provider = TracerProvider()
    provider.add_span_processor(ServerRouteTracker())
    tracer = provider.get_tracer("test")
    routes = {"/api/summarize": "summarize", "/api/chat/*": "chat"}
    with tracer.start_as_current_span("GET /api/chat/{id}", kind=SpanKind.SERVER) as server:
        # frameworks set http.route after routing, i.e. after the span started
        server.set_attribute("http.route", "/api/chat/{id}")
        with tracer.start_as_current_span("internal work"):
            assert current_attribution(routes).feature == "chat"
            assert current_attribution(routes).source == "route"
            with attribute(feature="explicit"):
                assert current_attribution(routes).feature == "explicit"
    assert current_attribution(routes).feature is None


def test_feature_for_route_exact_before_glob():
    routes = {"/api/*": "generic", "/api/summarize": "summarize"}
    assert feature_for_route("/api/summarize", routes) == "summarize"
    assert feature_for_route("/api/other", routes) == "generic"
    assert feature_for_route("/else", routes) is None
    assert feature_for_route(None, routes) is None


@given(st.text(), st.dictionaries(st.text(), st.text(), max_size=5))
def test_feature_for_route_never_raises(route, routes):
    result = feature_for_route(route, routes)
    assert result is None or result in routes.values()


def test_revenue_is_exact_decimal_and_validated():
    with attribute(revenue_usd=0.1):
        assert current_attribution().revenue_usd == Decimal("0.1")
    with pytest.raises(ValueError, match="not a decimal amount"):
        attribute(revenue_usd="ten dollars")
    with pytest.raises(ValueError):
        attribute(revenue_usd=float("nan"))
    with pytest.raises(TypeError, match="feature"):
        attribute(feature=42)  # type: ignore[arg-type]


def test_current_span_route_is_read_without_tracker():
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("srv", kind=SpanKind.SERVER, attributes={"http.route": "/api/summarize"}):
        assert current_attribution({"/api/summarize": "summarize"}).feature == "summarize"
    assert trace.get_current_span() is trace.INVALID_SPAN
