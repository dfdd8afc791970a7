"""Guardrail effectiveness per feature (``margin.guardrails``), read from ``llm_calls_guardrails_daily``.

Real chDB: calls with every cache result, route and limit action the exporter writes, and each
figure compared with an independent computation from the rows (hypothesis draws them), with the
tier and customer filters.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chdb_fixtures import call, chdb_client, chdb_path, database, insert_calls  # noqa: F401 - fixtures
from otel_margin import schema
from otel_margin.analysis import margin

START, END = date(2024, 5, 1), date(2024, 5, 28)


_guarded_call = st.fixed_dictionaries({
    "day": st.integers(0, 3), "feature": st.sampled_from(["a", "b"]), "customer": st.sampled_from(["c1", "c2"]),
    "tier": st.sampled_from(["pro", "team"]),
    "cache_result": st.sampled_from(["off", "exact", "semantic", "hit", "miss", "skip"]),
    "saved_usd": st.decimals(min_value=0, max_value=5, places=12),
    "cache_cost_usd": st.decimals(min_value=0, max_value=Decimal("0.01"), places=12),
    "route_from_model": st.sampled_from(["", "big-model"]), "limit_action": st.sampled_from(["allow", "cap", "block"]),
})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=st.lists(_guarded_call, max_size=30), tier=st.sampled_from(["", "pro"]), customer=st.sampled_from(["", "c1"]))
def test_guardrail_figures_equal_an_independent_computation(chdb_client, database, drawn, tier, customer):
    db = schema.quote_identifier(database)
    for table in ("llm_calls", "llm_calls_guardrails_daily"):
        chdb_client.command(f"TRUNCATE TABLE {db}.{table}")
    rows = [call(timestamp=datetime(2024, 5, 2 + d["day"], 12, tzinfo=timezone.utc),
                 **{k: v for k, v in d.items() if k != "day"}) for d in drawn]
    if rows:
        insert_calls(chdb_client, database, rows)
    hits, lookups = ("exact", "semantic", "hit"), ("exact", "semantic", "hit", "miss")
    expected: dict[str, list] = {}
    for r in rows:
        if (tier and r["tier"] != tier) or (customer and r["customer"] != customer):
            continue
        e = expected.setdefault(r["feature"], [0, 0, 0, 0, Decimal(0), Decimal(0), 0, Decimal(0), 0, 0])
        hit = r["cache_result"] in hits
        e[0] += 1
        e[1] += r["cache_result"] in lookups
        e[2] += r["cache_result"] in ("exact", "hit")
        e[3] += r["cache_result"] == "semantic"
        e[4] += r["saved_usd"] if hit else 0
        e[5] += r["cache_cost_usd"]
        e[6] += r["route_from_model"] != ""
        e[7] += r["saved_usd"] if r["route_from_model"] and not hit else 0
        e[8] += r["limit_action"] == "cap"
        e[9] += r["limit_action"] == "block"
    expected = {f: e for f, e in expected.items() if e[1] + e[6] + e[8] + e[9] > 0}
    got = margin.guardrails(chdb_client, start=START, end=END, tier=tier or None, customer=customer or None,
                            database=database)
    assert {g.feature: [g.calls, g.cache_lookups, g.exact_hits, g.semantic_hits, g.cache_saved_usd, g.cache_cost_usd,
                        g.routed_calls, g.route_saved_usd, g.capped_calls, g.blocked_calls] for g in got} == expected
    assert all(g.cache_net_saved_usd == g.cache_saved_usd - g.cache_cost_usd for g in got)
