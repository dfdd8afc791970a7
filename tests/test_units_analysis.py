"""Units of work, analysed (issue 15 item 5): cost per unit, margin per outcome, units without one.

Real chDB: rows of llm_calls, cost_lines and outcomes as the exporter writes them, read back
through the ``units`` view by :mod:`otel_margin.analysis.units`, and every figure compared with
an independent computation from the rows seeded (hypothesis draws the units).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_margin import schema
from otel_margin.analysis import units

from chdb_fixtures import call, chdb_client, chdb_path, database, insert_calls  # noqa: F401 - fixtures

DAY = datetime(2026, 11, 10, 9, tzinfo=timezone.utc)
RANGE = {"start": date(2026, 11, 1), "end": date(2026, 11, 30)}
LINE_COLUMNS = ("timestamp", "trace_id", "span_id", "service_name", "unit_id", "unit_kind", "feature", "customer",
                "tier", "cohort", "category", "amount_usd", "description")
OUTCOME_COLUMNS = ("timestamp", "trace_id", "span_id", "service_name", "unit_id", "unit_kind", "feature", "customer",
                   "tier", "cohort", "status", "revenue_usd", "quality")
CATEGORIES = ("inference", "orchestration", "infrastructure", "support")
TWELVE = Decimal(1).scaleb(-12)

_money = st.decimals(min_value=0, max_value=Decimal("5"), places=6)
_unit = st.fixed_dictionaries({
    "kind": st.sampled_from(["ticket", "document"]),
    "feature": st.sampled_from(["support", "contracts"]),
    "calls": st.lists(st.tuples(_money, st.booleans()), min_size=0, max_size=5),  # (cost, is an embedding)
    "lines": st.lists(st.tuples(_money, st.sampled_from(CATEGORIES)), max_size=2),
    "outcome": st.one_of(st.none(), st.tuples(st.sampled_from(["resolved", "failed", "escalated"]), _money)),
}).filter(lambda u: u["calls"] or u["lines"])


def seed(client: Any, db: str, drawn: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The drawn units as rows of llm_calls, cost_lines and outcomes; each unit with its id."""
    calls, lines, outcomes = [], [], []
    for number, drawn_unit in enumerate(drawn):
        unit_id, at = f"U-{number}", DAY + timedelta(minutes=number)
        common = {"unit_id": unit_id, "unit_kind": drawn_unit["kind"], "feature": drawn_unit["feature"],
                  "customer": "acme", "tier": "pro", "cohort": "c"}
        for cost, embedding in drawn_unit["calls"]:
            calls.append(call(timestamp=at, cost_usd=cost, operation="embeddings" if embedding else "chat",
                              **{k: v for k, v in common.items() if k != "cohort"}))
        for amount, category in drawn_unit["lines"]:
            lines.append({**common, "timestamp": at, "trace_id": "t", "span_id": uuid.uuid4().hex[:16],
                          "service_name": "svc", "category": category, "amount_usd": amount, "description": ""})
        if drawn_unit["outcome"]:
            status, revenue = drawn_unit["outcome"]
            outcomes.append({**common, "timestamp": at + timedelta(seconds=30), "trace_id": "t",
                             "span_id": uuid.uuid4().hex[:16], "service_name": "svc", "status": status,
                             "revenue_usd": revenue, "quality": None})
        drawn_unit["id"] = unit_id
    insert(client, db, calls, lines, outcomes)
    return drawn


def insert(client: Any, db: str, calls: list[dict[str, Any]], lines: list[dict[str, Any]],
           outcomes: list[dict[str, Any]]) -> None:
    """Rows of llm_calls, cost_lines and outcomes, as the exporter writes them."""
    if calls:
        insert_calls(client, db, calls)
    for table, rows, columns in (("cost_lines", lines, LINE_COLUMNS), ("outcomes", outcomes, OUTCOME_COLUMNS)):
        if rows:
            client.insert(f"{schema.quote_identifier(db)}.{table}", [[row[c] for c in columns] for row in rows],
                          column_names=list(columns))


def clear(client: Any, db: str) -> None:
    """Empty the tables a units query reads (hypothesis reuses one database across examples)."""
    for table in ("llm_calls", "cost_lines", "outcomes", "units_daily"):
        client.command(f"TRUNCATE TABLE {schema.quote_identifier(db)}.{table}")


def expected_cost(drawn_unit: dict[str, Any]) -> Decimal:
    return sum((cost for cost, _ in drawn_unit["calls"]), Decimal(0)) + sum(
        (amount for amount, _ in drawn_unit["lines"]), Decimal(0))


def exact_quantile(values: list[Decimal], level: float) -> Decimal:
    """The element at floor(level * n) of the sorted values (the definition the report states)."""
    ordered = sorted(values)
    return ordered[min(int(level * len(ordered)), len(ordered) - 1)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=st.lists(_unit, min_size=1, max_size=12), grace=st.sampled_from([0, 10**7]))
def test_units_figures_equal_an_independent_computation(chdb_client, database, drawn, grace):
    clear(chdb_client, database)
    seed(chdb_client, database, drawn)

    # Cost per unit per (kind, feature): count, exact total, average truncated, P50/P95/max.
    costs: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
    for u in drawn:
        costs[(u["kind"], u["feature"])].append(expected_cost(u))
    got = {(row.unit_kind, row.feature): row for row in
           units.cost_per_unit(chdb_client, grace_minutes=grace, database=database, **RANGE)}
    assert set(got) == set(costs)
    for key, values in costs.items():
        row = got[key]
        assert (row.units, row.cost_usd) == (len(values), sum(values))
        assert row.avg_cost_usd == (sum(values) / len(values)).quantize(TWELVE, rounding=ROUND_DOWN)
        assert row.p50_cost_usd == exact_quantile(values, 0.5)
        assert row.p95_cost_usd == exact_quantile(values, 0.95)
        assert row.max_cost_usd == max(values)

    # Margin per (feature, outcome); no outcome reads abandoned after the grace period, open before.
    groups = units.outcome_groups(chdb_client, grace_minutes=grace, database=database, **RANGE)
    per_outcome: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [0, Decimal(0), Decimal(0)])
    for u in drawn:
        status = u["outcome"][0] if u["outcome"] else ("abandoned" if grace == 0 else "open")
        total = per_outcome[(u["feature"], status)]
        total[0] += 1
        total[1] += u["outcome"][1] if u["outcome"] else 0
        total[2] += expected_cost(u)
    rows = units.margin_per_outcome(groups)
    assert {(r.feature, r.outcome): [r.units, r.revenue_usd, r.cost_usd] for r in rows} == per_outcome
    for r in rows:
        assert r.margin_usd == r.revenue_usd - r.cost_usd
        assert r.cost_per_unit_usd == (r.cost_usd / r.units).quantize(TWELVE, rounding=ROUND_DOWN)
    assert [r.margin_usd for r in rows] == sorted(r.margin_usd for r in rows)

    # The summary: units without an outcome and what failed units cost.
    without = [u for u in drawn if not u["outcome"]]
    failed = [u for u in drawn if u["outcome"] and u["outcome"][0] == "failed"]
    summary = units.unit_summary(groups)
    state = "abandoned" if grace == 0 else "open"
    assert summary == units.UnitSummary(
        units=len(drawn), with_outcome=len(drawn) - len(without),
        abandoned_units=len(without) if state == "abandoned" else 0,
        abandoned_cost_usd=sum(map(expected_cost, without), Decimal(0)) if state == "abandoned" else 0,
        open_units=len(without) if state == "open" else 0,
        open_cost_usd=sum(map(expected_cost, without), Decimal(0)) if state == "open" else 0,
        outside_units=0, outside_cost_usd=0,
        failed_units=len(failed), failed_cost_usd=sum(map(expected_cost, failed), Decimal(0)),
        failed_revenue_usd=sum((u["outcome"][1] for u in failed), Decimal(0)),
    )


def test_the_feature_filter_and_the_range_bound_every_units_figure(chdb_client, database):
    drawn = [{"kind": "ticket", "feature": "support", "calls": [(Decimal("0.5"), False)], "lines": [],
              "outcome": ("resolved", Decimal(2))},
             {"kind": "document", "feature": "contracts", "calls": [(Decimal("0.25"), False)], "lines": [],
              "outcome": None}]
    seed(chdb_client, database, drawn)
    (row,) = units.cost_per_unit(chdb_client, feature="support", database=database, **RANGE)
    assert (row.unit_kind, row.units, row.cost_usd) == ("ticket", 1, Decimal("0.5"))
    december = {"start": date(2026, 12, 1), "end": date(2026, 12, 31)}
    assert units.cost_per_unit(chdb_client, database=database, **december) == []
    assert units.unit_summary(units.outcome_groups(chdb_client, database=database, **december)).units == 0


def test_p50_and_p95_are_the_units_at_half_and_ninety_five_percent_of_the_sorted_costs(chdb_client, database):
    costs = [Decimal(n) / 100 for n in range(40, 0, -1)]  # 40 units, stored out of order
    seed(chdb_client, database, [{"kind": "document", "feature": "contracts", "calls": [(cost, False)], "lines": [],
                                  "outcome": None} for cost in costs])
    (row,) = units.cost_per_unit(chdb_client, database=database, **RANGE)
    assert (row.p50_cost_usd, row.p95_cost_usd, row.max_cost_usd) == (Decimal("0.21"), Decimal("0.39"), Decimal("0.4"))
    assert row.avg_cost_usd == Decimal("0.205")


def test_a_call_outside_any_unit_is_not_an_abandoned_unit(chdb_client, database):
    seed(chdb_client, database, [{"kind": "ticket", "feature": "support", "calls": [(Decimal("0.5"), False)],
                                  "lines": [], "outcome": None}])
    insert_calls(chdb_client, database, [call(timestamp=DAY, feature="chat", cost_usd=Decimal("0.25"))])
    groups = units.outcome_groups(chdb_client, grace_minutes=0, database=database, **RANGE)
    summary = units.unit_summary(groups)
    assert (summary.abandoned_units, summary.abandoned_cost_usd) == (1, Decimal("0.5"))
    assert (summary.outside_units, summary.outside_cost_usd) == (1, Decimal("0.25"))
    assert {(row.feature, row.outcome) for row in units.margin_per_outcome(groups)} == {
        ("support", "abandoned"), ("chat", units.OUTSIDE_UNITS)}
    db = schema.quote_identifier(database)
    assert chdb_client.query(f"SELECT feature, in_unit FROM {db}.units_daily ORDER BY feature").result_rows == [
        ("chat", 0), ("support", 1)]  # only a unit's calls can have an outcome to look up


def test_a_unit_takes_its_kind_and_feature_from_its_calls_else_from_its_outcome(chdb_client, database):
    # U-0: calls name no feature, its outcome does; U-1: its first attributed call wins over an outcome
    # recorded earlier with another feature; U-2: calls from a service that knew the unit but not its kind.
    seed(chdb_client, database, [
        {"kind": "ticket", "feature": "unattributed", "calls": [(Decimal("0.5"), False)], "lines": [], "outcome": None},
        {"kind": "document", "feature": "contracts", "calls": [(Decimal("0.25"), False)], "lines": [], "outcome": None},
        {"kind": "", "feature": "search", "calls": [(Decimal("0.125"), False)], "lines": [], "outcome": None}])
    outcome = lambda unit_id, kind, feature, at: {  # noqa: E731
        "timestamp": at, "trace_id": "t", "span_id": uuid.uuid4().hex[:16], "service_name": "svc", "unit_id": unit_id,
        "unit_kind": kind, "feature": feature, "customer": "acme", "tier": "pro", "cohort": "c", "status": "resolved",
        "revenue_usd": Decimal(1), "quality": None}
    rows = [outcome("U-0", "ticket", "support", DAY + timedelta(hours=1)),
            outcome("U-1", "document", "support", DAY - timedelta(hours=1)),
            outcome("U-2", "agent-run", "search", DAY + timedelta(hours=1))]
    chdb_client.insert(f"{schema.quote_identifier(database)}.outcomes", [[row[c] for c in OUTCOME_COLUMNS] for row in rows],
                       column_names=list(OUTCOME_COLUMNS))
    expected = {("ticket", "support"), ("document", "contracts"), ("agent-run", "search")}
    assert {(row.unit_kind, row.feature) for row in units.cost_per_unit(chdb_client, database=database, **RANGE)} == expected
    assert {(group.unit_kind, group.feature) for group in
            units.outcome_groups(chdb_client, database=database, **RANGE)} == expected


@pytest.mark.parametrize("grace", [-1, 1.5, True, 2**32])
def test_a_bad_grace_period_names_the_value_and_the_fix(chdb_client, database, grace):
    with pytest.raises(ValueError, match=rf"grace_minutes {grace!r} .*e\.g\. 60"):
        units.cost_per_unit(chdb_client, grace_minutes=grace, database=database, **RANGE)


def test_a_range_that_ends_before_it_starts_says_swap(chdb_client, database):
    with pytest.raises(ValueError, match="ends before it starts; swap"):
        units.outcome_groups(chdb_client, start=RANGE["end"], end=RANGE["start"], database=database)


_spread_unit = st.fixed_dictionaries({
    "kind": st.sampled_from(["ticket", ""]),
    "feature": st.sampled_from(["support", "unattributed"]),
    "call_days": st.lists(st.integers(-3, 33), max_size=3),  # days from the range's start; some outside it
    "line_days": st.lists(st.integers(-3, 33), max_size=1),
    "outcome": st.one_of(st.none(), st.tuples(st.sampled_from(["resolved", "failed"]), st.integers(-3, 33),
                                              st.sampled_from(["ticket", "document"]),
                                              st.sampled_from(["support", "contracts", "unattributed"]))),
}).filter(lambda u: u["call_days"] or u["line_days"] or u["outcome"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=st.lists(_spread_unit, min_size=1, max_size=10), grace=st.sampled_from([0, 10**7]))
def test_outcome_groups_are_the_units_view_grouped(chdb_client, database, drawn, grace):
    """The query aggregates units_daily and outcomes itself (for speed); its groups must be the
    documented units view's rows, grouped: units active in the range by their calls and cost lines,
    or only by an outcome recorded in it, with the view's fallbacks for kind and feature."""
    clear(chdb_client, database)
    start = datetime.combine(RANGE["start"], datetime.min.time(), timezone.utc)
    calls, lines, outcomes = [], [], []
    for number, u in enumerate(drawn):
        common = {"unit_id": f"U-{number}", "unit_kind": u["kind"], "feature": u["feature"], "customer": "acme",
                  "tier": "pro"}
        for day in u["call_days"]:
            calls.append(call(timestamp=start + timedelta(days=day, minutes=number), cost_usd=Decimal("0.5"), **common))
        for day in u["line_days"]:
            lines.append({**common, "cohort": "c", "timestamp": start + timedelta(days=day), "trace_id": "t",
                          "span_id": uuid.uuid4().hex[:16], "service_name": "svc", "category": "support",
                          "amount_usd": Decimal("1.25"), "description": ""})
        if u["outcome"]:
            status, day, kind, feature = u["outcome"]
            outcomes.append({**common, "unit_kind": kind, "feature": feature, "cohort": "c",
                             "timestamp": start + timedelta(days=day, hours=1), "trace_id": "t",
                             "span_id": uuid.uuid4().hex[:16], "service_name": "svc", "status": status,
                             "revenue_usd": Decimal(2) if status == "resolved" else None, "quality": None})
    insert(chdb_client, database, calls, lines, outcomes)

    view = chdb_client.query(
        f"SELECT unit_kind, feature, outcome, recorded_status != '' AS recorded, revenue_usd, cost_usd "
        f"FROM {schema.quote_identifier(database)}.units(start = {{start:Date}}, end = {{end:Date}}, grace_minutes = {{grace:UInt32}})",
        parameters={**RANGE, "grace": grace}).result_rows
    expected: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, Decimal(0), Decimal(0)])
    for kind, feature, status, recorded, revenue, cost in view:
        total = expected[(kind, feature if feature else "unattributed", status, bool(recorded))]
        total[0] += 1
        total[1] += revenue or 0
        total[2] += cost
    got = {(g.unit_kind, g.feature, g.outcome, g.recorded): [g.units, g.revenue_usd, g.cost_usd]
           for g in units.outcome_groups(chdb_client, grace_minutes=grace, database=database, **RANGE)}
    assert got == expected
