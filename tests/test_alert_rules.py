"""The built-in alert rules on seeded histories in chDB: each fires on its breach, stays quiet on
the healthy history, and names the primary cost driver (a model's price rise, a customer's
longer prompts, a tier mix shift).

Histories go in through the insert path the exporter uses (``insert_calls``: rows of
``llm_calls``, the rollups filled by their materialized views). Every call's cost is computed
here from its tokens and a price per million tokens, exactly, as the price catalog would.
Each rule runs as the engine runs it: ``$database`` filled in, the parameters it names bound
from ``thresholds.parameters``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from chdb_fixtures import call, chdb_client, chdb_path, database, insert_calls  # noqa: F401 - fixtures
from otel_margin.analysis.alerts.rules import BUILTIN_RULES_DIR, COLUMNS, rule_from_text
from otel_margin.analysis.alerts.thresholds import parameters
from otel_margin.policy import parse_policy

NOW = datetime(2026, 12, 7, 18, 0, tzinfo=timezone.utc)
TODAY = NOW.date()
MTOK = Decimal(10**6)


@dataclass(frozen=True)
class Usage:
    """Calls of one customer on one day: how many, how long, at what price, earning what."""

    customer: str = "acme"
    tier: str = "pro"
    calls: int = 30
    input_tokens: int = 1000
    output_tokens: int = 200
    input_price: Decimal = Decimal("2.50")  # USD per million tokens
    output_price: Decimal = Decimal("10.00")
    revenue: Decimal = Decimal("0.01")  # per call
    model: str = "gpt-4o"
    feature: str = "chat"
    provider: str = "openai"


def calls_of(day: date, usage: Usage) -> list[dict[str, Any]]:
    input_cost = usage.input_tokens * usage.input_price / MTOK
    output_cost = usage.output_tokens * usage.output_price / MTOK
    zero = Decimal(0)
    return [
        call(timestamp=datetime.combine(day, time(index % 18, index % 60), timezone.utc), feature=usage.feature,
             customer=usage.customer, tier=usage.tier, cost_usd=input_cost + output_cost,
             components=(input_cost, zero, zero, output_cost, zero), revenue_usd=usage.revenue,
             input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, response_model=usage.model,
             provider=usage.provider)
        for index in range(usage.calls)
    ]


def seed(client: Any, database: str, days: range, usage_on: Any) -> None:
    """``usage_on(day)`` → the :class:`Usage` list of that day, for ``TODAY - d`` for d in ``days``."""
    rows = []
    for back in days:
        day = TODAY - timedelta(days=back)
        for usage in usage_on(day):
            rows.extend(calls_of(day, usage))
    insert_calls(client, database, rows)


def run(client: Any, database: str, name: str, policy_text: str = "", **overrides: Any) -> list[dict[str, Any]]:
    """The rows rule ``name`` returns, run as the engine runs it."""
    rule = rule_from_text(name, f"rules/{name}.sql", BUILTIN_RULES_DIR.joinpath(f"{name}.sql").read_text("utf-8"))
    values = {**parameters(parse_policy(policy_text), now=NOW, client=client, database=database), **overrides}
    result = client.query(rule.render(database=database), parameters={key: values[key] for key in rule.parameters})
    if result.result_rows:
        assert list(result.column_names[: len(COLUMNS)]) == [name for name, _ in COLUMNS]
    return [dict(zip(result.column_names, row)) for row in result.result_rows]


def steady(day: date) -> list[Usage]:
    return [Usage(customer="acme"), Usage(customer="globex", tier="free", calls=10)]


# --- the margin zones ------------------------------------------------------------------------------
# A call costs 0.0025 + 0.002 = 0.0045 USD. Revenue 0.01 per call: margin 55 %, exactly the core floor.


def test_margin_7d_yellow_fires_in_the_band_and_names_the_price_rise(chdb_client, database):
    # Revenue 0.0125 a call. Before: cost 0.0045, margin 64 % (green over the core floor 55 + 5).
    # This week gpt-4o input costs 3.40/M instead of 2.50: cost 0.0054, margin 56.8 % (yellow).
    def usage(day: date) -> list[Usage]:
        price = Decimal("2.50") if day <= TODAY - timedelta(days=7) else Decimal("3.40")
        return [Usage(customer="acme", input_price=price, revenue=Decimal("0.0125")),
                Usage(customer="globex", tier="free", calls=10, input_price=price, revenue=Decimal("0.0125"))]

    seed(chdb_client, database, range(14), usage)
    (row,) = run(chdb_client, database, "margin_7d_yellow")
    assert (row["rule"], row["severity"], row["feature"], row["customer"]) == ("margin_7d_yellow", "yellow", "chat", "")
    assert row["driver"] == "model gpt-4o input price +36%"
    assert row["trend"] == "down"
    assert row["value"] == pytest.approx(56.8) and row["threshold"] == 60


def test_margin_7d_yellow_is_quiet_on_a_healthy_history_and_under_an_exception(chdb_client, database):
    healthy = [Usage(customer="acme", revenue=Decimal("0.0125")), Usage(customer="globex", tier="free", calls=10,
                                                                        revenue=Decimal("0.0125"))]
    seed(chdb_client, database, range(14), lambda day: healthy)  # margin 64 %: green over 55 + 5
    assert run(chdb_client, database, "margin_7d_yellow") == []
    # The same history against a premium floor (65 %) is red, not yellow; against 60 + 5 it is yellow...
    assert run(chdb_client, database, "margin_7d_yellow", "[features.chat]\nfloor_pct = 60\n")[0]["threshold"] == 65
    # ...unless a strategic exception that is still under review covers the feature.
    excepted = ('[features.chat]\nfloor_pct = 60\n[[exceptions]]\nfeature = "chat"\nowner = "jane"\n'
                'reason = "launch pricing"\nreview_date = 2026-12-31\n')
    assert run(chdb_client, database, "margin_7d_yellow", excepted) == []
    expired = excepted.replace("2026-12-31", "2026-12-06")
    assert len(run(chdb_client, database, "margin_7d_yellow", expired)) == 1


def test_margin_3d_red_fires_below_the_floor_and_names_the_customer_with_longer_prompts(chdb_client, database):
    # globex's prompts grow from 1,000 to 6,000 tokens for the last 3 days: chat's margin falls
    # from 64 % to below the core floor (55 %).
    def usage(day: date) -> list[Usage]:
        longer = day > TODAY - timedelta(days=3)
        return [Usage(customer="acme", revenue=Decimal("0.0125")),
                Usage(customer="globex", tier="pro", calls=30, revenue=Decimal("0.0125"),
                      input_tokens=6000 if longer else 1000)]

    seed(chdb_client, database, range(6), usage)
    (row,) = run(chdb_client, database, "margin_3d_red")
    assert (row["rule"], row["severity"], row["feature"]) == ("margin_3d_red", "red", "chat")
    assert row["driver"] == "customer globex prompts +500%"
    assert row["value"] < row["threshold"] == 55 and row["trend"] == "down"
    assert run(chdb_client, database, "margin_7d_yellow") == []  # red is not yellow


def test_margin_3d_red_is_quiet_on_a_healthy_history(chdb_client, database):
    seed(chdb_client, database, range(6), lambda day: [Usage(revenue=Decimal("0.0125"))])
    assert run(chdb_client, database, "margin_3d_red") == []


def test_customer_cost_ratio_fires_for_the_customer_whose_prompts_grew(chdb_client, database):
    # acme pays 0.0125 a call and costs 0.0045 (ratio 0.36). globex's prompts grow fourfold
    # over the last 30 days: 0.0120 a call, ratio 0.96.
    def usage(day: date) -> list[Usage]:
        recent = day > TODAY - timedelta(days=30)
        return [Usage(customer="acme", calls=5, revenue=Decimal("0.0125")),
                Usage(customer="globex", calls=5, revenue=Decimal("0.0125"), input_tokens=4000 if recent else 1000)]

    seed(chdb_client, database, range(0, 60, 3), usage)
    (row,) = run(chdb_client, database, "customer_cost_ratio")
    assert (row["rule"], row["severity"], row["feature"], row["customer"]) == (
        "customer_cost_ratio", "yellow", "", "globex")
    assert row["value"] == pytest.approx(0.96) and row["threshold"] == 0.8 and row["trend"] == "up"
    assert row["driver"] == "prompts +300% in feature chat"
    # Over 1 (losing money) it is red; a ratio threshold of 1 quiets the 0.96.
    assert run(chdb_client, database, "customer_cost_ratio", "[alerts.thresholds]\ncost_to_revenue_ratio = 1\n") == []


def test_cost_per_request_wow_fires_on_a_tier_mix_shift_and_names_it(chdb_client, database):
    # Free-tier requests are long (3,000-token prompts); pro ones short. Prices and each tier's
    # requests stay the same, but this week free makes 3 requests in 4 instead of 1 in 4.
    def usage(day: date) -> list[Usage]:
        shifted = day > TODAY - timedelta(days=7)
        return [Usage(customer="acme", tier="pro", calls=10 if shifted else 30),
                Usage(customer="initech", tier="free", calls=30 if shifted else 10, input_tokens=3000)]

    seed(chdb_client, database, range(14), usage)
    (row,) = run(chdb_client, database, "cost_per_request_wow")
    assert (row["rule"], row["feature"], row["customer"], row["trend"]) == ("cost_per_request_wow", "chat", "", "up")
    assert row["driver"] == "tier mix: free share 25%→75%"
    # 0.0045 / 0.0095 a request: 0.005750 → 0.008250, +43.5 %: red (over twice 15 %).
    assert row["value"] == pytest.approx(43.478, abs=1e-3) and row["severity"] == "red"
    assert run(chdb_client, database, "cost_per_request_wow", "[alerts.thresholds]\ncost_rise_pct = 50\n") == []


def test_cost_per_request_wow_is_quiet_on_a_steady_history(chdb_client, database):
    seed(chdb_client, database, range(14), steady)
    assert run(chdb_client, database, "cost_per_request_wow") == []


def test_cost_per_unit_wow_fires_when_units_take_more_calls(chdb_client, database):
    # Tickets take 2 calls each before, 3 this week; each call costs the same.
    rows = []
    for back in range(14):
        day = TODAY - timedelta(days=back)
        per_unit = 3 if back < 7 else 2
        for ticket in range(12):
            for usage in [Usage(calls=per_unit)]:
                for row in calls_of(day, usage):
                    row.update(unit_id=f"{day}-{ticket}", unit_kind="ticket")
                    rows.append(row)
    insert_calls(chdb_client, database, rows)
    (row,) = run(chdb_client, database, "cost_per_unit_wow")
    assert (row["rule"], row["feature"], row["unit_kind"]) == ("cost_per_unit_wow", "chat", "ticket")
    assert row["value"] == pytest.approx(50) and row["severity"] == "red"
    assert row["driver"] == "calls per unit 2→3"
    assert run(chdb_client, database, "cost_per_request_wow") == []  # a call costs what it did


def test_cost_per_request_3_days_fires_on_three_rises_in_a_row_only(chdb_client, database):
    outputs = {4: 200, 3: 260, 2: 330, 1: 420, 0: 100}  # days back → output tokens per call
    seed(chdb_client, database, range(5), lambda day: [Usage(output_tokens=outputs[(TODAY - day).days])])
    (row,) = run(chdb_client, database, "cost_per_request_3_days")
    assert (row["rule"], row["severity"], row["feature"], row["trend"]) == ("cost_per_request_3_days", "yellow", "chat", "up")
    # 0.0045 → 0.0067 a request (today, partial, is not one of the three days).
    assert row["value"] == pytest.approx((0.0025 + 0.0042) / 0.0045 * 100 - 100)
    assert row["driver"] == "customer acme outputs +110%"


def test_cost_per_request_3_days_is_quiet_when_a_day_did_not_rise(chdb_client, database):
    outputs = {4: 200, 3: 260, 2: 250, 1: 420}
    seed(chdb_client, database, range(1, 5), lambda day: [Usage(output_tokens=outputs[(TODAY - day).days])])
    assert run(chdb_client, database, "cost_per_request_3_days") == []


def _catalog_price(model: str) -> tuple[Decimal, Decimal]:
    from otel_margin.prices import PriceCatalog

    resolved = PriceCatalog(log_unpriced=False).lookup("openai", model, at=NOW)
    assert resolved is not None and not resolved.input.tiers
    return resolved.input.base, resolved.output.base


def test_price_change_fires_when_the_catalog_now_prices_a_model_higher(chdb_client, database):
    # The last day's gpt-4o-mini calls were priced with an input price 20 % below today's catalog
    # (an older catalog release); output as the catalog says.
    input_price, output_price = _catalog_price("gpt-4o-mini")
    old = [Usage(model="gpt-4o-mini", input_price=input_price * Decimal("0.8"), output_price=output_price)]
    seed(chdb_client, database, range(2), lambda day: old)
    (row,) = run(chdb_client, database, "price_change")
    assert (row["rule"], row["feature"], row["trend"]) == ("price_change", "chat", "up")
    assert row["driver"] == "model gpt-4o-mini input price +25%"
    recorded = 1000 * input_price * Decimal("0.8") + 200 * output_price
    assert row["value"] == pytest.approx(float(1000 * input_price * Decimal("0.2") / recorded * 100))
    # Without the store the current prices are unknown and the rule is quiet (Grafana's case).
    assert run(chdb_client, database, "price_change", current_prices=[]) == []


def test_price_change_follows_the_policy_discount_and_is_quiet_at_current_prices(chdb_client, database):
    input_price, output_price = _catalog_price("gpt-4o-mini")
    seed(chdb_client, database, range(2), lambda day: [Usage(model="gpt-4o-mini", input_price=input_price,
                                                             output_price=output_price)])
    assert run(chdb_client, database, "price_change") == []
    # A contract discount added to the policy: every component 10 % cheaper from now on.
    discount = '[[prices.discounts]]\nprovider = "openai"\nmodel = "gpt-4o*"\npercent = 10\n'
    (row,) = run(chdb_client, database, "price_change", discount)
    assert (row["severity"], row["trend"]) == ("info", "down")
    assert row["value"] == pytest.approx(-10)
    assert row["driver"] in ("model gpt-4o-mini input price -10%", "model gpt-4o-mini output price -10%")



def test_price_change_compares_a_tiered_price_with_its_tiers(chdb_client, database):
    # claude-sonnet-4-5: 3 / 15 USD per million tokens, 6 / 22.5 above 200,000 input tokens. Long
    # and short calls priced at their tiers average between the two: no change.
    def tiers(day: date) -> list[Usage]:
        return [Usage(model="claude-sonnet-4-5", provider="anthropic", input_tokens=250_000, calls=5,
                      input_price=Decimal(6), output_price=Decimal("22.5")),
                Usage(model="claude-sonnet-4-5", provider="anthropic", input_tokens=1000,
                      input_price=Decimal(3), output_price=Decimal(15))]

    seed(chdb_client, database, range(1), tiers)
    assert run(chdb_client, database, "price_change") == []
    # Calls priced at half the lower tier's input price: +100 % to reach it.
    seed(chdb_client, database, range(1), lambda day: [Usage(model="claude-sonnet-4-5", provider="anthropic",
                                                             feature="docs", input_price=Decimal("1.5"),
                                                             output_price=Decimal(15))])
    (row,) = run(chdb_client, database, "price_change")
    assert (row["feature"], row["driver"]) == ("docs", "model claude-sonnet-4-5 input price +100%")

def test_unpriced_share_fires_and_names_the_unpriced_model(chdb_client, database):
    rows = calls_of(TODAY, Usage(calls=40)) + [
        call(timestamp=NOW - timedelta(hours=2), cost_usd=None, response_model="llama-local", provider="vllm")
        for _ in range(4)
    ]
    insert_calls(chdb_client, database, rows)
    (row,) = run(chdb_client, database, "unpriced_share")
    assert (row["rule"], row["feature"], row["severity"]) == ("unpriced_share", "chat", "yellow")
    assert row["value"] == pytest.approx(4 / 44 * 100)
    assert row["driver"] == "model llama-local (provider vllm): 4 unpriced calls"
    assert run(chdb_client, database, "unpriced_share", "[alerts.thresholds]\nunpriced_share_pct = 10\n") == []


def test_unattributed_share_fires_and_names_the_service(chdb_client, database):
    attributed = calls_of(TODAY, Usage(calls=40))
    unattributed = [dict(row, feature="unattributed", service_name="billing-worker")
                    for row in calls_of(TODAY, Usage(calls=4))]
    unattributed += [dict(row, feature="unattributed", service_name="web") for row in calls_of(TODAY, Usage(calls=1))]
    insert_calls(chdb_client, database, attributed + unattributed)
    (row,) = run(chdb_client, database, "unattributed_share")
    assert (row["rule"], row["feature"]) == ("unattributed_share", "unattributed")
    assert row["value"] == pytest.approx(5 / 45 * 100)
    assert row["driver"] == "service billing-worker: 80% of the unattributed cost"
    assert run(chdb_client, database, "unattributed_share", "[alerts.thresholds]\nunattributed_share_pct = 12\n") == []


def test_expired_exception_fires_only_past_its_review_date(chdb_client, database):
    policy = ('[[exceptions]]\nfeature = "onboarding"\nowner = "jane"\nreason = "land and expand"\n'
              'review_date = 2026-12-01\n'
              '[[exceptions]]\nfeature = "search"\nowner = "raj"\nreason = "launch"\nreview_date = 2026-12-07\n')
    (row,) = run(chdb_client, database, "expired_exception", policy)
    assert (row["rule"], row["feature"], row["value"], row["threshold"]) == ("expired_exception", "onboarding", 6, 0)
    assert row["driver"] == "exception owned by jane (land and expand) was due for review on 2026-12-01"


def test_every_builtin_rule_is_quiet_on_an_empty_store_and_on_a_steady_history(chdb_client, database):
    names = sorted(entry.name[:-4] for entry in BUILTIN_RULES_DIR.iterdir() if entry.name.endswith(".sql"))
    assert len(names) >= 10
    for name in names:
        assert run(chdb_client, database, name) == [], name
    seed(chdb_client, database, range(60), lambda day: [Usage(revenue=Decimal("0.0125")),
                                                        Usage(customer="globex", tier="free", calls=10)])
    for name in names:
        if name != "customer_cost_ratio":  # globex earns nothing: the ratio has no value, so no row
            assert run(chdb_client, database, name) == [], name
    assert run(chdb_client, database, "customer_cost_ratio") == []


def test_the_documented_example_rule_runs_as_written(chdb_client, database):
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "alerts.md").read_text("utf-8")
    start = text.index("-- alert-rules/daily_spend.sql")
    sql = text[start: text.index("```", start)]
    rule = rule_from_text("daily_spend", "alert-rules/daily_spend.sql", sql)
    assert rule.parameters == ("now",)
    seed(chdb_client, database, range(1), lambda day: [Usage(calls=40, input_tokens=10_000_000)])  # 25 USD a call
    result = chdb_client.query(rule.render(database=database), parameters={"now": NOW})
    assert [row[:3] for row in result.result_rows] == [("daily_spend", "yellow", "chat")]
    assert result.result_rows[0][4] == pytest.approx(40 * 25.002)
