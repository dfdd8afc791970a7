"""Allocation (issue 15 item 4) and the waterfall's totals, in real chDB.

Property tests (hypothesis): whatever the usage, the imports, the rule and the policy's value
weights and AI shares, the subscription revenue and the period costs the waterfall allocates add
up exactly — to the last of 12 decimals — to what was imported (its AI share, for revenue), at
every level; an outcome recorded any number of times is counted once. Plus the rules themselves
on small cases computed by hand: inference calls by default, value weights, AI share, an outcome
recorded outside its unit's attribution.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timezone
from decimal import ROUND_DOWN, Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from otel_margin import schema
from otel_margin.analysis import margin
from otel_margin.analysis.period_costs import import_period_costs, parse_costs_csv
from otel_margin.analysis.revenue import RevenueEvent, import_revenue
from otel_margin.analysis.waterfall import waterfall
from otel_margin.policy import PolicyError, parse_policy

from chdb_fixtures import call, chdb_client, chdb_path, database, insert_calls  # noqa: F401 - fixtures

DECEMBER = {"start": date(2026, 11, 1), "end": date(2027, 1, 31)}
TABLES = ("period_costs", "revenue_events", "outcomes", "cost_lines", "llm_calls", "llm_calls_daily",
          "llm_calls_hourly", "llm_calls_cost_daily", "llm_calls_waterfall_daily",
          "llm_calls_parts_daily")
PERIODS = {"2026-12": (date(2026, 12, 1), date(2026, 12, 31)),
           "2026-12-01..2026-12-10": (date(2026, 12, 1), date(2026, 12, 10)),
           "2026-12-11..2026-12-31": (date(2026, 12, 11), date(2026, 12, 31))}
CATEGORIES = ("inference", "orchestration", "infrastructure", "support")
TWELVE = Decimal(1).scaleb(-12)


def _clear(client, database: str) -> None:
    db = schema.quote_identifier(database)
    for table in TABLES:
        client.command(f"TRUNCATE TABLE {db}.{table}")


def _policy(weights: dict[str, Decimal], shares: dict[str, Decimal]):
    text = "".join(f'[features.{name}]\nvalue_weight = "{value}"\n' for name, value in weights.items())
    text += "".join(f'[tiers.{name}]\nai_share_pct = "{value}"\n' for name, value in shares.items())
    return parse_policy(text)


_usage = st.lists(st.tuples(
    st.dates(min_value=date(2026, 12, 1), max_value=date(2026, 12, 31)),
    st.sampled_from(["c1", "c2", "c3"]), st.sampled_from(["f1", "f2", "f3"]), st.sampled_from(["pro", "free"]),
    st.sampled_from(["k1", "k2"]), st.sampled_from(["m1", "m2"]), st.sampled_from(["", "doc"]),
    st.sampled_from(["chat", "chat", "embeddings"]), st.integers(min_value=0, max_value=5000)), max_size=14)
_revenue = st.lists(st.tuples(
    st.sampled_from(["c1", "c2", "c3", "c4"]), st.sampled_from(sorted(PERIODS)),
    st.decimals(min_value=Decimal("-500"), max_value=Decimal("100000"), places=12),
    st.sampled_from(["pro", "free", "team"]), st.sampled_from(["", "", "f1", "f9"])),
    max_size=6, unique_by=lambda row: (row[0], row[1], row[4]))
_costs = st.lists(st.tuples(
    st.sampled_from(sorted(PERIODS)), st.decimals(min_value=Decimal("-1000"), max_value=Decimal("100000"), places=12),
    st.sampled_from(CATEGORIES), st.sampled_from(["", "f1", "f9"]), st.sampled_from(["", "c1", "c4"]),
    st.sampled_from(["", "pro"])),
    max_size=6, unique_by=lambda row: (row[0], row[2], row[3], row[4], row[5]))
_weights = st.dictionaries(st.sampled_from(["f1", "f2", "f3"]),
                           st.decimals(min_value=0, max_value=10, places=3), max_size=3)
_shares = st.dictionaries(st.sampled_from(["pro", "free", "team"]),
                          st.decimals(min_value=0, max_value=100, places=2), max_size=3)


def _seed(client, database: str, usage, revenue, costs) -> list[RevenueEvent]:
    """An empty store with ``usage`` as calls, ``revenue`` and ``costs`` imported; the revenue events."""
    _clear(client, database)
    calls = [call(timestamp=datetime(d.year, d.month, d.day, 12, tzinfo=timezone.utc), customer=c, feature=f, tier=t,
                  cohort=k, response_model=m, unit_kind=u, operation=op, input_tokens=n, cost_usd=Decimal(n) / 1000)
             for d, c, f, t, k, m, u, op, n in usage]
    if calls:
        insert_calls(client, database, calls)
    events = [RevenueEvent(c, *PERIODS[p], amount, tier, feature) for c, p, amount, tier, feature in revenue]
    if events:
        import_revenue(client, events, source="r.csv", database=database)
    if costs:
        text = "period,amount,category,feature,customer,tier\n" + "".join(
            f"{p},{format(amount, 'f')},{cat},{f},{c},{t}\n" for p, amount, cat, f, c, t in costs)
        import_period_costs(client, parse_costs_csv(text), source="c.csv", database=database)
    return events


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(usage=_usage, revenue=_revenue, costs=_costs, by=st.sampled_from(margin.ALLOCATE_BY),
       days=st.tuples(st.dates(min_value=date(2026, 11, 25), max_value=date(2027, 1, 5)),
                      st.dates(min_value=date(2026, 11, 25), max_value=date(2027, 1, 5))).map(sorted))
def test_one_row_per_part_sums_what_the_rows_per_day_sum_over_any_range(
        chdb_client, database, usage, revenue, costs, by, days):
    """by_day = 0 sums each allocated part's days in start..end in one row (closed form, the last
    day's remainder included only when that day is in the range): the same as by_day = 1's rows."""
    _seed(chdb_client, database, usage, revenue, costs)
    sums = {}
    for by_day in (0, 1):
        sums[by_day] = chdb_client.query(
            f"SELECT customer, feature, tier, cohort, unit_kind, sum(subscription_revenue_usd), sum(inference_usd),"
            f" sum(orchestration_usd), sum(infrastructure_usd), sum(support_usd), count() > 0"
            f" FROM {schema.quote_identifier(database)}.margin_daily("
            f"allocate_by = {{allocate_by:String}}, start = {{start:Date}}, end = {{end:Date}}, by_day = {by_day},"
            f" value_features = [], value_weights = [], ai_tiers = [], ai_share_pcts = [])"
            f" GROUP BY ALL ORDER BY ALL",
            parameters={"allocate_by": by, "start": days[0], "end": days[1]}).result_rows
    assert sums[0] == sums[1]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(usage=_usage, revenue=_revenue, by=st.sampled_from(["calls", "tokens", "cost"]))
@example(usage=[(date(2026, 12, 5), "c1", "f1", "pro", "k1", "m1", "", "chat", 10),  # a month: by_month
                (date(2026, 12, 6), "c1", "f2", "pro", "k1", "m1", "", "embeddings", 10),
                (date(2026, 12, 12), "c2", "f1", "pro", "k1", "m1", "doc", "chat", 30),
                (date(2026, 12, 12), "c2", "f3", "free", "k2", "m2", "", "embeddings", 20)],
         revenue=[("c1", "2026-12", Decimal(100), "pro", ""), ("c2", "2026-12-11..2026-12-31", Decimal(7), "team", "")],
         by="calls")
def test_each_part_gets_its_share_of_the_periods_usage_per_month_or_per_day(chdb_client, database, usage, revenue, by):
    """A period of whole months is split over the parts' monthly sums (the by_month projection), any
    other period over their daily rows: either way each part gets amount × its weight / the total,
    truncated to 12 places, the last part in order taking the remainder — computed here from the
    calls themselves."""
    _seed(chdb_client, database, usage, revenue, [])
    expected: dict[tuple, Decimal] = {}
    checked = set()
    for customer, period, amount, tier, feature in revenue:
        start, end = PERIODS[period]
        weights: dict[tuple, Decimal] = {}
        counts: dict[tuple, int] = {}
        for day, c, f, _, cohort, _, kind, operation, n in usage:
            if c == customer and start <= day <= end and feature in ("", f):
                part = (c, f, tier, cohort, kind)
                weight = {"calls": Decimal(operation != "embeddings"), "tokens": Decimal(n + 50), "cost": Decimal(n) / 1000}
                weights[part] = weights.get(part, Decimal(0)) + weight[by]
                counts[part] = counts.get(part, 0) + 1
        if not weights:
            continue  # kept whole on its own feature: test_allocated_revenue_and_period_costs_add_up_…
        checked.add((customer, amount))
        if not any(weights.values()):
            weights = {part: Decimal(count) for part, count in counts.items()}  # no weight at all: calls
        parts = sorted(weights)
        total = sum(weights.values())
        shares = [(amount * weights[part] / total).quantize(TWELVE, rounding=ROUND_DOWN) for part in parts]
        shares[-1] = amount - sum(shares[:-1], Decimal(0))
        for part, share in zip(parts, shares):
            expected[part] = expected.get(part, Decimal(0)) + share
    customers = {c for c, _, a, *_ in revenue} - {c for c, _, a, *_ in revenue if (c, a) not in checked}
    rows = chdb_client.query(
        f"SELECT customer, feature, tier, cohort, unit_kind, sum(subscription_revenue_usd)"
        f" FROM {schema.quote_identifier(database)}.margin_daily(allocate_by = {{by:String}}, start = '2026-12-01',"
        f" end = '2026-12-31', by_day = 0, value_features = [], value_weights = [], ai_tiers = [], ai_share_pcts = [])"
        f" GROUP BY ALL", parameters={"by": by}).result_rows
    actual = {tuple(row[:5]): row[5] for row in rows if row[0] in customers and row[5] != 0}
    assert actual == {part: share for part, share in expected.items() if part[0] in customers and share != 0}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(usage=_usage, revenue=_revenue, costs=_costs, weights=_weights, shares=_shares,
       by=st.sampled_from(margin.ALLOCATE_BY))
def test_allocated_revenue_and_period_costs_add_up_exactly_at_every_level(
        chdb_client, database, usage, revenue, costs, weights, shares, by):
    events = _seed(chdb_client, database, usage, revenue, costs)

    def ai_part(event: RevenueEvent) -> Decimal:  # the AI share, truncated to 12 places toward 0
        if event.feature or event.tier not in shares:
            return event.amount_usd
        return (event.amount_usd * shares[event.tier] / 100).quantize(TWELVE, rounding=ROUND_DOWN)

    expected_revenue = sum((ai_part(e) for e in events), Decimal(0))
    expected_cost = {category: sum((amount for _, amount, cat, *_ in costs if cat == category), Decimal(0))
                     for category in CATEGORIES}
    call_cost = {"inference": sum((Decimal(n) / 1000 for *_, op, n in usage if op != "embeddings"), Decimal(0)),
                 "orchestration": sum((Decimal(n) / 1000 for *_, op, n in usage if op == "embeddings"), Decimal(0))}
    policy = _policy(weights, shares)
    for level in margin.LEVELS:
        rows = waterfall(chdb_client, level=level, allocate_by=by, policy=policy, database=database, **DECEMBER)
        assert len({row.key for row in rows}) == len(rows)
        total = lambda name: sum((getattr(row, name) for row in rows), Decimal(0))  # noqa: E731
        assert total("subscription_revenue_usd") == expected_revenue, level
        for category in CATEGORIES:
            assert total(f"{category}_usd") == expected_cost[category] + call_cost.get(category, 0), (level, category)
        assert sum(row.calls for row in rows) == len(usage)
        for row in rows:
            assert row.revenue_usd == row.usage_revenue_usd + row.outcome_revenue_usd + row.subscription_revenue_usd
            assert row.cost_usd == row.inference_usd + row.orchestration_usd + row.infrastructure_usd + row.support_usd
            assert row.gross_margin_usd == row.revenue_usd - row.cost_usd


def _outcome(unit_id: str, at: datetime, revenue: Decimal, *, feature: str = "support", customer: str = "acme",
             status: str = "resolved") -> list:
    return [at, uuid.uuid4().hex, uuid.uuid4().hex[:16], "svc", unit_id, "ticket", feature, customer, "pro", "k1",
            status, revenue, None]


OUTCOME_COLUMNS = ["timestamp", "trace_id", "span_id", "service_name", "unit_id", "unit_kind", "feature", "customer",
                   "tier", "cohort", "status", "revenue_usd", "quality"]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recordings=st.lists(st.tuples(st.sampled_from(["U-1", "U-2", "U-3"]),
                                     st.decimals(min_value=0, max_value=1000, places=2),
                                     st.sampled_from(["support", "unattributed"])), min_size=1, max_size=8))
@example(recordings=[("U-2", Decimal(5), "support"), ("U-2", Decimal(7), "unattributed"),
                     ("U-1", Decimal(3), "unattributed"), ("U-1", Decimal(4), "support")])
def test_an_outcome_recorded_any_number_of_times_earns_once_the_last_recording(chdb_client, database, recordings):
    _clear(chdb_client, database)
    db = schema.quote_identifier(database)
    # U-1 has a call in "search": an outcome recorded for it outside any attribution is attributed like it.
    insert_calls(chdb_client, database, [call(timestamp=datetime(2026, 12, 5, 8, tzinfo=timezone.utc), feature="search",
                                              unit_id="U-1", unit_kind="ticket")])
    for i, (unit_id, revenue, feature) in enumerate(recordings):
        # Each recording its own insert (a retry is a later batch), one second after the one before;
        # a later one may be recorded outside the attribution an earlier one had, or the other way round.
        chdb_client.insert(f"{db}.outcomes", [_outcome(unit_id, datetime(2026, 12, 5, 9, 0, i, tzinfo=timezone.utc),
                                                       revenue, feature=feature)], column_names=OUTCOME_COLUMNS)
    last = {unit_id: (revenue, feature) for unit_id, revenue, feature in recordings}
    (row,) = waterfall(chdb_client, level="all", policy=parse_policy(""), database=database, **DECEMBER)
    assert row.outcome_revenue_usd == row.revenue_usd == sum((revenue for revenue, _ in last.values()), Decimal(0))
    expected: dict[str, Decimal] = {}
    for unit_id, (revenue, feature) in last.items():
        feature = "search" if unit_id == "U-1" and feature == "unattributed" else feature
        expected[feature] = expected.get(feature, Decimal(0)) + revenue
    by_feature = waterfall(chdb_client, level="feature", policy=parse_policy(""), database=database, **DECEMBER)
    assert {r.key: r.outcome_revenue_usd for r in by_feature if r.outcome_revenue_usd or r.key in expected} == expected


def test_default_rule_is_inference_calls_value_weights_and_the_ai_share_of_a_seat(chdb_client, database):
    # acme: 2 chat calls in "write", 2 in "review" (+ 2 embedding calls in review, not inference);
    # a $99 pro seat of which the policy says 40 % pays for AI: $39.60 of AI revenue.
    moment = datetime(2026, 12, 3, 12, tzinfo=timezone.utc)
    insert_calls(chdb_client, database,
                 [call(timestamp=moment, customer="acme", feature="write", cost_usd=Decimal("0.01"))] * 2
                 + [call(timestamp=moment, customer="acme", feature="review", cost_usd=Decimal("0.05"))] * 2
                 + [call(timestamp=moment, customer="acme", feature="review", operation="embeddings",
                         cost_usd=Decimal("0.001"))] * 2)
    import_revenue(chdb_client, [RevenueEvent("acme", date(2026, 12, 1), date(2026, 12, 31), Decimal("99"), "pro")],
                   source="r.csv", database=database)
    run = lambda policy, **options: {  # noqa: E731
        row.key: row.subscription_revenue_usd
        for row in waterfall(chdb_client, level="feature", policy=parse_policy(policy), database=database,
                             **DECEMBER, **options)}
    assert run("") == {"write": Decimal("49.5"), "review": Decimal("49.5")}  # inference calls 2 : 2
    # By cost: the priced cost of all its calls, embeddings too (write 0.02, review 0.102); parts in
    # name order, the last one taking the remainder.
    review = (Decimal(99) * Decimal("0.102") / Decimal("0.122")).quantize(TWELVE, rounding=ROUND_DOWN)
    assert run("", allocate_by="cost") == {"write": 99 - review, "review": review}
    weighted = '[features.write]\nvalue_weight = 3\n'
    assert run(weighted) == run("")  # weights count only when allocating by value
    assert run(weighted, allocate_by="value") == {"write": Decimal("74.25"), "review": Decimal("24.75")}
    assert run("[tiers.pro]\nai_share_pct = 40\n") == {"write": Decimal("19.8"), "review": Decimal("19.8")}
    assert run("[tiers.free]\nai_share_pct = 40\n") == run("")  # another tier's share


def test_an_outcome_recorded_outside_its_units_attribution_is_attributed_like_the_unit(chdb_client, database):
    insert_calls(chdb_client, database, [call(timestamp=datetime(2026, 12, 2, 8, tzinfo=timezone.utc), customer="acme",
                                              feature="support", unit_id="T-1", unit_kind="ticket")])
    db = schema.quote_identifier(database)
    chdb_client.insert(f"{db}.outcomes", [_outcome("T-1", datetime(2026, 12, 4, 8, tzinfo=timezone.utc), Decimal(2),
                                                   feature="unattributed", customer="")], column_names=OUTCOME_COLUMNS)
    rows = waterfall(chdb_client, level="customer", policy=parse_policy(""), database=database, **DECEMBER)
    assert [(row.key, row.outcome_revenue_usd) for row in rows] == [("acme", Decimal(2))]
    (feature,) = waterfall(chdb_client, level="feature", policy=parse_policy(""), database=database, **DECEMBER)
    assert feature.key == "support"


@pytest.mark.parametrize(("text", "message"), [
    ("[features.a]\nvalue_weight = -1\n", "[features.a] value_weight = -1 is not valid; expected a weight of at least 0"),
    ("[tiers.pro]\nai_share_pct = 140\n", "[tiers.pro] ai_share_pct = 140 is not valid; expected a percentage from 0 to 100"),
    ("[tiers.pro]\nai_shar_pct = 40\n", "did you mean 'ai_share_pct'?"),
])
def test_bad_allocation_keys_are_refused_with_their_line(text, message):
    with pytest.raises(PolicyError) as raised:
        parse_policy(text)
    assert "line " in str(raised.value) and message in str(raised.value)
