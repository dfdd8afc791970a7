"""Every margin view, in chDB, against an independent plain-Python computation.

The workload is seeded and generated here with Decimal money; the expected numbers are
computed with exact fractions from the generated rows (not from any SQL), and the SQL
results must match to 1e-9 USD (the views keep 12 decimal places and truncate).
"""

from __future__ import annotations

import math
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_DOWN, Decimal
from fractions import Fraction

import pytest

from chdb_fixtures import call, chdb_client, chdb_path, database, insert_calls  # noqa: F401 - fixtures
from otel_margin import schema
from otel_margin.analysis import margin
from otel_margin.analysis.revenue import RevenueEvent, import_revenue

START, END = date(2024, 5, 1), date(2024, 5, 28)
FEATURES = ("search", "summarize", "docs")
CUSTOMERS = {  # customer: (tier, cohort)
    "c0": ("pro", "2023-Q4"), "c1": ("pro", "2024-Q1"), "c2": ("free", "2024-Q1"),
    "c3": ("team", "2023-Q4"), "c4": ("free", "2024-Q2"),
}
TOLERANCE = Fraction(1, 10**9)


@dataclass
class Fact:
    calls: int = 0
    priced: int = 0
    unpriced: int = 0
    tokens: int = 0
    cost: Fraction = Fraction(0)
    revenue: Fraction = Fraction(0)


def generate(seed: int = 7) -> tuple[list[dict], list[RevenueEvent]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(1500):
        day = START + timedelta(days=rng.randrange((END - START).days + 1))
        moment = datetime.combine(day, time(rng.randrange(24), rng.randrange(60)), timezone.utc)
        customer = rng.choice(sorted(CUSTOMERS))
        tier, cohort = CUSTOMERS[customer]
        feature = rng.choice(FEATURES)
        if rng.random() < 0.1:
            cost, components = None, None
        else:
            parts = tuple(Decimal(rng.randrange(0, 50_000)) / Decimal(10**6) for _ in range(5))
            cost, components = sum(parts, Decimal(0)), parts
        revenue = Decimal(rng.randrange(0, 90_000)) / Decimal(10**6) if rng.random() < 0.2 else None
        rows.append(call(timestamp=moment, feature=feature, customer=customer, tier=tier, cohort=cohort,
                         cost_usd=cost, components=components, revenue_usd=revenue,
                         input_tokens=rng.randrange(1, 4000), output_tokens=rng.randrange(1, 800)))
    events = [
        RevenueEvent("c0", date(2024, 5, 1), date(2024, 5, 31), Decimal("99.00"), "pro"),
        RevenueEvent("c1", date(2024, 5, 10), date(2024, 5, 20), Decimal("40.00"), "pro", "search"),
        RevenueEvent("c2", date(2024, 5, 1), date(2024, 5, 31), Decimal("50.00"), "free"),
        RevenueEvent("c3", date(2024, 4, 20), date(2024, 5, 5), Decimal("12.34"), "team"),
        RevenueEvent("c9", date(2024, 5, 1), date(2024, 5, 31), Decimal("30.00"), "pro"),
    ]
    return rows, events


def expected_facts(rows: list[dict], events: list[RevenueEvent], allocate_by: str) -> dict[tuple, Fact]:
    """(day, customer, feature, tier, cohort) → Fact, by the rules in docs/margin.md."""
    facts: dict[tuple, Fact] = defaultdict(Fact)
    for row in rows:
        key = (row["timestamp"].date(), row["customer"], row["feature"], row["tier"], row["cohort"])
        fact = facts[key]
        fact.calls += 1
        fact.tokens += row["input_tokens"] + row["output_tokens"]
        if row["cost_usd"] is None:
            fact.unpriced += 1
        else:
            fact.priced += 1
            fact.cost += Fraction(row["cost_usd"])
        fact.revenue += Fraction(row["revenue_usd"] or 0)
    usage = {key: (fact.calls, fact.tokens, fact.cost) for key, fact in facts.items()}
    cohort_of = {customer: cohort for customer, (_, cohort) in CUSTOMERS.items()}
    for event in events:
        days = [event.period_start + timedelta(d) for d in range((event.period_end - event.period_start).days + 1)]
        shares: dict[tuple[str, str], Fraction] = {}
        if event.feature:
            shares[(event.feature, cohort_of.get(event.customer, ""))] = Fraction(1)
        else:
            weights: dict[tuple[str, str], list[Fraction]] = defaultdict(lambda: [Fraction(0), Fraction(0)])
            for (day, customer, feature, _tier, cohort), (calls, tokens, cost) in usage.items():
                if customer == event.customer and event.period_start <= day <= event.period_end:
                    chosen = {"cost": cost, "calls": Fraction(calls), "tokens": Fraction(tokens)}[allocate_by]
                    weights[(feature, cohort)][0] += chosen
                    weights[(feature, cohort)][1] += calls
            total = sum(w for w, _ in weights.values())
            total_calls = sum(c for _, c in weights.values())
            for group, (weight, calls) in weights.items():
                shares[group] = weight / total if total else calls / total_calls
            if not weights:
                shares[("unattributed", cohort_of.get(event.customer, ""))] = Fraction(1)
        for (feature, cohort), share in shares.items():
            for day in days:
                facts[(day, event.customer, feature, event.tier, cohort)].revenue += (
                    Fraction(event.amount_usd) * share / len(days)
                )
    return facts


def group(facts: dict[tuple, Fact], level: str, start: date, end: date, feature: str = "") -> dict[str, Fact]:
    index = {"all": None, "customer": 1, "feature": 2, "tier": 3, "cohort": 4}[level]
    out: dict[str, Fact] = defaultdict(Fact)
    for key, fact in facts.items():
        if not start <= key[0] <= end or (feature and key[2] != feature):
            continue
        target = out["all" if index is None else key[index]]
        target.calls += fact.calls
        target.unpriced += fact.unpriced
        target.cost += fact.cost
        target.revenue += fact.revenue
    return out


def close(actual: Decimal | None, expected: Fraction | None, tolerance: Fraction = TOLERANCE) -> bool:
    if actual is None or expected is None:
        return actual is None and expected is None
    return abs(Fraction(actual) - expected) <= tolerance


def pct(revenue: Fraction, cost: Fraction) -> Fraction | None:
    return None if revenue == 0 else (revenue - cost) * 100 / revenue


@pytest.fixture(scope="module")
def workload(chdb_client):
    # One seeded database for the module: the views only read it.
    name = "margin_workload"
    schema.apply_schema(chdb_client, database=name, ttl_days=0)
    rows, events = generate()
    insert_calls(chdb_client, name, rows)
    import_revenue(chdb_client, events, source="test.csv", database=name)
    yield chdb_client, name, rows, events
    chdb_client.command(f"DROP DATABASE {schema.quote_identifier(name)}")


@pytest.mark.parametrize("allocate_by", ["cost", "calls", "tokens"])
@pytest.mark.parametrize("level", ("all", "feature", "tier", "customer", "cohort"))  # model, unit_kind: test_allocation.py
def test_margin_by_level_matches_independent_computation(workload, level, allocate_by):
    client, db, rows, events = workload
    expected = group(expected_facts(rows, events, allocate_by), level, START, END)
    actual = margin.margin_by(client, level, start=START, end=END, allocate_by=allocate_by, database=db)
    assert {row.key for row in actual} == set(expected)
    for row in actual:
        want = expected[row.key]
        assert (row.calls, row.unpriced_calls) == (want.calls, want.unpriced), row.key
        assert close(row.revenue_usd, want.revenue), (row.key, row.revenue_usd, float(want.revenue))
        assert close(row.cost_usd, want.cost), row.key
        assert close(row.margin_usd, want.revenue - want.cost), row.key
        assert close(row.margin_pct, pct(want.revenue, want.cost), Fraction(1, 10**6)), row.key
    assert [row.margin_usd for row in actual] == sorted(row.margin_usd for row in actual)


def test_unpriced_calls_are_counted_and_never_priced_at_zero(workload):
    client, db, rows, _ = workload
    unpriced = sum(1 for row in rows if row["cost_usd"] is None)
    (total,) = margin.margin_by(client, "all", start=START, end=END, database=db)
    assert unpriced > 0 and total.unpriced_calls == unpriced
    cost_map = margin.cost_map(client, start=START, end=END, database=db)
    assert sum(row.unpriced_calls for row in cost_map) == unpriced
    # The averages divide by priced calls only: an unpriced call counted as 0 USD would lower them.
    for row in cost_map:
        priced = [Fraction(r["cost_usd"]) for r in rows if r["feature"] == row.feature and r["cost_usd"] is not None]
        assert row.priced_calls == len(priced)
        assert close(row.avg_cost_usd, sum(priced) / len(priced), Fraction(1, 10**12))


def test_allocated_subscription_revenue_adds_up_to_the_imported_amounts(workload):
    client, db, _, events = workload
    everything = margin.margin_by(client, "all", start=date(2024, 4, 1), end=date(2024, 6, 30), database=db)
    usage_revenue = sum(
        (Fraction(r["revenue_usd"] or 0) for r in workload[2]), Fraction(0)
    )
    assert Fraction(everything[0].revenue_usd) == usage_revenue + sum(Fraction(e.amount_usd) for e in events)


@pytest.mark.parametrize("split", [date(2024, 4, 25), date(2024, 5, 1), date(2024, 5, 6), date(2024, 5, 19)])
def test_adjacent_ranges_add_up_exactly_to_their_union(workload, split):
    # margin_daily produces only the days asked for: cutting a range anywhere (inside a revenue
    # period, on its first day, across the April-May periods) loses and duplicates no cent.
    client, db, _, _ = workload
    first, last = date(2024, 4, 1), date(2024, 6, 30)
    whole = {row.key: row for row in margin.margin_by(client, "feature", start=first, end=last, database=db)}
    before = {row.key: row for row in margin.margin_by(client, "feature", start=first, end=split - timedelta(1), database=db)}
    after = {row.key: row for row in margin.margin_by(client, "feature", start=split, end=last, database=db)}
    for key, row in whole.items():
        parts = [part for part in (before.get(key), after.get(key)) if part is not None]
        assert sum((part.revenue_usd for part in parts), Decimal(0)) == row.revenue_usd, key
        assert sum((part.cost_usd for part in parts), Decimal(0)) == row.cost_usd, key
        assert sum(part.calls for part in parts) == row.calls, key


def test_the_split_follows_usage_that_arrives_after_the_import(chdb_client, database):
    # The allocation is computed at query time: calls that arrive after `revenue import` move
    # the unattributed revenue between features, without a re-import.
    may = {"start": date(2024, 5, 1), "end": date(2024, 5, 31), "database": database, "allocate_by": "cost"}
    import_revenue(chdb_client, [RevenueEvent("acme", date(2024, 5, 1), date(2024, 5, 31), Decimal("90"), "pro")],
                   source="seats.csv", database=database)
    assert {row.key: row.revenue_usd for row in margin.margin_by(chdb_client, "feature", **may)} == {
        "unattributed": Decimal(90)
    }
    moment = datetime(2024, 5, 3, 9, tzinfo=timezone.utc)
    insert_calls(chdb_client, database, [call(timestamp=moment, feature="search", customer="acme", tier="pro",
                                              cost_usd=Decimal("1"))])
    first = {row.key: row.revenue_usd for row in margin.margin_by(chdb_client, "feature", **may)}
    insert_calls(chdb_client, database, [call(timestamp=moment + timedelta(days=20), feature="summarize",
                                              customer="acme", tier="pro", cost_usd=Decimal("2"))])
    later = {row.key: row.revenue_usd for row in margin.margin_by(chdb_client, "feature", **may)}
    assert first == {"search": Decimal(90)}
    assert later == {"search": Decimal(30), "summarize": Decimal(60)}  # by cost, 1 : 2


@pytest.mark.parametrize("level", ["all", "feature"])
def test_daily_series_with_rolling_windows(workload, level):
    client, db, rows, events = workload
    facts = expected_facts(rows, events, "cost")
    start, end = date(2024, 5, 5), date(2024, 5, 25)
    actual = margin.daily_margin(client, start=start, end=end, level=level, allocate_by="cost", database=db)
    by_day: dict[tuple[str, date], Fact] = {}
    for day in {key[0] for key in facts}:
        for key, fact in group(facts, level, day, day).items():
            by_day[(key, day)] = fact
    assert {(row.key, row.day) for row in actual} == {k for k in by_day if start <= k[1] <= end}
    for row in actual:
        want = by_day[(row.key, row.day)]
        assert close(row.margin_usd, want.revenue - want.cost)
        for days, usd, percent in ((3, row.margin_3d_usd, row.margin_3d_pct), (7, row.margin_7d_usd, row.margin_7d_pct)):
            window = [by_day[(row.key, row.day - timedelta(d))] for d in range(days)
                      if (row.key, row.day - timedelta(d)) in by_day]
            revenue = sum((f.revenue for f in window), Fraction(0))
            cost = sum((f.cost for f in window), Fraction(0))
            assert close(usd, revenue - cost), (row.key, row.day, days)
            assert close(percent, pct(revenue, cost), Fraction(1, 10**6))


def test_weekly_series_with_four_week_trailing_averages(workload):
    client, db, rows, events = workload
    facts = expected_facts(rows, events, "cost")
    weekly: dict[date, Fact] = defaultdict(Fact)
    for key, fact in facts.items():
        if key[0] <= END:
            week = weekly[key[0] - timedelta(key[0].weekday())]
            week.revenue += fact.revenue
            week.cost += fact.cost
    actual = margin.weekly_margin(client, start=date(2024, 5, 13), end=END, allocate_by="cost", database=db)
    assert [row.week for row in actual] == [date(2024, 5, 13), date(2024, 5, 20), date(2024, 5, 27)]
    for row in actual:
        window = [weekly[w] for w in (row.week - timedelta(7 * k) for k in range(4)) if w in weekly]
        margins = [w.revenue - w.cost for w in window]
        assert close(row.margin_usd, weekly[row.week].revenue - weekly[row.week].cost)
        assert close(row.margin_4w_avg_usd, sum(margins) / len(margins))
        revenue = sum((w.revenue for w in window), Fraction(0))
        assert close(row.margin_4w_pct, pct(revenue, revenue - sum(margins)), Fraction(1, 10**6))


def test_cost_map_components_and_p95(workload):
    client, db, rows, _ = workload
    actual = {row.feature: row for row in margin.cost_map(client, start=START, end=END, database=db)}
    assert set(actual) == set(FEATURES)
    names = ("input", "cache_read", "cache_write", "output", "other")
    for feature, row in actual.items():
        priced = [r for r in rows if r["feature"] == feature and r["cost_usd"] is not None]
        n = len(priced)
        for name in names:
            values = sorted(Fraction(r[f"cost_{name}_usd"]) for r in priced)
            assert close(getattr(row, f"avg_{name}_usd"), sum(values) / n, Fraction(1, 10**12)), name
            assert_p95(getattr(row, f"p95_{name}_usd"), values)
        assert_p95(row.p95_cost_usd, sorted(Fraction(r["cost_usd"]) for r in priced))
        assert row.calls == sum(1 for r in rows if r["feature"] == feature)


def assert_p95(actual: Decimal | None, ordered: list[Fraction]) -> None:
    # DDSketch with alpha = 0.01: ClickHouse answers with a bucket bound of its (interpolated)
    # log mapping, so the estimate is within about one bucket, ~2 %; we allow 3 % around the
    # order statistics next to rank 0.95 (n - 1).
    rank = 0.95 * (len(ordered) - 1)
    low = ordered[max(math.floor(rank) - 1, 0)]
    high = ordered[min(math.ceil(rank) + 1, len(ordered) - 1)]
    assert actual is not None
    gamma = Fraction(103, 100)
    assert low / gamma - Fraction(1, 10**9) <= Fraction(actual) <= high * gamma + Fraction(1, 10**9)


def test_customer_scatter_and_negative_margin_customers(workload):
    client, db, rows, events = workload
    expected = group(expected_facts(rows, events, "cost"), "customer", START, END)
    points = margin.customer_scatter(client, start=START, end=END, allocate_by="cost", database=db)
    assert {p.customer for p in points} == set(expected)
    for point in points:
        want = expected[point.customer]
        assert close(point.revenue_usd, want.revenue) and close(point.margin_usd, want.revenue - want.cost)
        assert point.tier == CUSTOMERS.get(point.customer, ("pro",))[0]
    losers = margin.negative_margin_customers(client, start=START, end=END, allocate_by="cost", database=db)
    assert [row.key for row in losers] == sorted(
        (c for c, f in expected.items() if f.revenue < f.cost), key=lambda c: expected[c].revenue - expected[c].cost
    )


def test_a_customers_tier_on_the_scatter_is_the_one_with_the_most_revenue_in_all(chdb_client, database):
    # pro earns 6 + 6 over two features, team 10 in one: the single largest row is team's.
    at = datetime(2024, 5, 3, 12, tzinfo=timezone.utc)
    insert_calls(chdb_client, database, [
        call(timestamp=at, feature="x", tier="pro", revenue_usd=Decimal(6)),
        call(timestamp=at, feature="y", tier="pro", revenue_usd=Decimal(6)),
        call(timestamp=at, feature="x", tier="team", revenue_usd=Decimal(10))])
    (point,) = margin.customer_scatter(chdb_client, start=START, end=END, database=database)
    assert (point.customer, point.tier, point.revenue_usd) == ("acme", "pro", Decimal(22))


def test_feature_filter_restricts_every_view(workload):
    client, db, rows, events = workload
    expected = group(expected_facts(rows, events, "cost"), "customer", START, END, feature="search")
    actual = margin.margin_by(client, "customer", start=START, end=END, feature="search", database=db)
    assert {row.key: row.calls for row in actual} == {k: f.calls for k, f in expected.items()}
    assert [row.feature for row in margin.cost_map(client, start=START, end=END, feature="search", database=db)] == ["search"]


def test_document_analysis_worked_example(chdb_client, database):
    """$99/seat/month; 50 documents at $0.12 is a 94 % margin, 400 at $0.35 about -41 %."""
    rows = []
    for n in range(50):
        rows.append(call(timestamp=datetime(2024, 5, 1 + n % 28, 9, tzinfo=timezone.utc), feature="document-analysis",
                         customer="light", tier="seat", cost_usd=Decimal("0.10") if n % 2 else Decimal("0.14")))
    for n in range(400):
        rows.append(call(timestamp=datetime(2024, 5, 1 + n % 28, 10, tzinfo=timezone.utc), feature="document-analysis",
                         customer="heavy", tier="seat", cost_usd=Decimal("0.30") if n % 2 else Decimal("0.40")))
    insert_calls(chdb_client, database, rows)
    seats = [RevenueEvent(c, date(2024, 5, 1), date(2024, 5, 31), Decimal("99.00"), "seat") for c in ("light", "heavy")]
    import_revenue(chdb_client, seats, source="seats.csv", database=database)
    month = {"start": date(2024, 5, 1), "end": date(2024, 5, 31), "database": database}
    customers = {row.key: row for row in margin.margin_by(chdb_client, "customer", **month)}
    assert customers["light"].cost_usd == Decimal("6.00") and customers["heavy"].cost_usd == Decimal("140.00")
    assert customers["light"].margin_pct.quantize(Decimal("0.1")) == Decimal("93.9")
    assert round(customers["light"].margin_pct) == 94
    assert customers["heavy"].margin_usd == Decimal("-41.00")
    assert customers["heavy"].margin_pct.quantize(Decimal("0.01")) == Decimal("-41.41")
    (feature,) = margin.margin_by(chdb_client, "feature", **month)
    assert (feature.key, feature.revenue_usd, feature.margin_usd) == ("document-analysis", Decimal(198), Decimal(52))
    (cost_map,) = margin.cost_map(chdb_client, **{k: v for k, v in month.items()})
    assert cost_map.avg_cost_usd == (Decimal(146) / 450).quantize(Decimal("1e-12"), ROUND_DOWN)


def test_bad_arguments_name_the_value_and_the_choices(chdb_client, database):
    with pytest.raises(ValueError, match="'product'.*feature"):
        margin.margin_by(chdb_client, "product", start=START, end=END, database=database)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'seats'.*calls, cost, tokens, value"):
        margin.margin_by(chdb_client, "all", start=START, end=END, allocate_by="seats", database=database)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ends before it starts"):
        margin.cost_map(chdb_client, start=END, end=START, database=database)


def test_report_json_carries_the_same_numbers_as_strings(workload):
    import json

    from otel_margin.cli.report import build_report, to_json

    client, db, _, _ = workload
    report = json.loads(to_json(build_report(client, start=START, end=END, database=db)))
    features = {row.key: row for row in margin.margin_by(client, "feature", start=START, end=END, database=db,
                                                         allocate_by=report["range"]["allocate_by"])}
    assert {row["key"]: Decimal(row["margin_usd"]) for row in report["features"]} == {
        key: row.margin_usd for key, row in features.items()
    }
    assert all(isinstance(row["revenue_usd"], str) for row in report["features"])
    assert {row["feature"] for row in report["cost_map"]} == set(FEATURES)
    assert report["range"] == {"start": "2024-05-01", "end": "2024-05-28", "feature": "", "allocate_by": "calls"}


def test_report_command_reads_through_a_storage_session(chdb_client, chdb_path, database, monkeypatch, capsys):
    import json

    from otel_margin.cli import main

    now = datetime.now(timezone.utc)
    insert_calls(chdb_client, database, [call(timestamp=now, feature="search", cost_usd=Decimal("0.5"),
                                              revenue_usd=Decimal("2")), call(timestamp=now, cost_usd=None)])
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")
    assert main(["report", "--since", "2", "--format", "json", "--database", database]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total"][0]["margin_usd"] == "1.500000000000" and report["total"][0]["unpriced_calls"] == 1
    monkeypatch.delenv("COLUMNS", raising=False)
    assert main(["report", "--since", "2", "--database", database]) == 0
    out = capsys.readouterr().out
    assert "Per feature" in out and "search" in out and "upper bounds" in out
    # Captured output is not a terminal: every column keeps its full header and figures.
    assert "cache write" in out and "…" not in out


def test_report_on_a_database_without_the_schema_says_there_is_no_data_yet_and_creates_nothing(
        chdb_client, chdb_path, monkeypatch, capsys):
    from otel_margin.cli import main

    empty = f"margin_empty_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")
    assert main(["report", "--since", "2", "--database", empty]) == 0  # nothing exported yet: not an error
    out = capsys.readouterr().out
    assert out.startswith("No data yet") and f"database '{empty}'" in out and "upgrade" not in out
    assert chdb_client.command(f"SELECT count() FROM system.databases WHERE name = '{empty}'") == 0
    chdb_client.command(f"CREATE DATABASE {empty}")  # a database, but no tables in it
    try:
        assert main(["report", "--since", "2", "--database", empty]) == 0
        assert capsys.readouterr().out.startswith("No data yet")
        assert chdb_client.command(f"SELECT count() FROM system.tables WHERE database = '{empty}'") == 0
        # The calls table without the views that read it: part of the schema is missing (an upgrade).
        chdb_client.command(schema.render("llm_calls_table.sql", database=f"`{empty}`", on_cluster="", local="",
                                          replicated="", ttl=""))
        assert main(["report", "--since", "2", "--database", empty]) == 1
        err = capsys.readouterr().err
        assert "lacks the otel-margin schema" in err and "otel-margin schema apply" in err and "UNKNOWN_" in err
        assert chdb_client.command(f"SELECT count() FROM system.tables WHERE database = '{empty}'") == 1
    finally:
        chdb_client.command(f"DROP DATABASE IF EXISTS {empty}")
