"""The values alert rules may use: one dictionary of bound parameters, from the policy file.

A rule file refers to ``{name:Type}``; :func:`parameters` gives every name a built-in rule
uses (docs/alerts.md lists them with their types), so a user's rule may use them too:

* ``now`` ``DateTime64(6, 'UTC')``: the evaluation time (rules derive their days from it);
* ``floor_features`` ``Array(String)`` with ``floor_pcts`` and ``band_pts`` ``Array(Float64)``:
  the floor and yellow band of every feature the policy names (parallel arrays: a dict does
  not bind as a ``Map`` through clickhouse-connect); ``default_floor_pct`` and
  ``default_band_pts`` ``Float64`` for every other feature;
* ``exceptions`` ``Array(Tuple(String, String, String, Date))``: every strategic exception
  as (feature, owner, reason, review date), expired or not;
* the thresholds of ``[alerts.thresholds]`` (:data:`DEFAULTS`);
* ``allocate_by``, ``value_features``, ``value_weights``, ``ai_tiers``, ``ai_share_pcts``: what
  the ``margin_daily`` view takes: the default allocation rule with the policy's value weights
  and AI shares (:mod:`otel_margin.analysis.allocation`);
* ``current_prices`` ``Array(Tuple(String, String, Float64, Float64, Float64, Float64))``:
  (provider, model, lowest and highest input price, lowest and highest output price, USD per
  million tokens) of each model called in the last 7 days, as the installed catalog and the
  policy price it now. Needs the store to know the models: pass ``client``; without one the
  list is empty and the price-change rule stays quiet.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Mapping

from otel_margin.analysis.allocation import allocation
from otel_margin.analysis.zones import Floors
from otel_margin.policy import Policy
from otel_margin.schema import DEFAULT_DATABASE, quote_identifier

DEFAULTS: Mapping[str, Decimal | int] = {
    "cost_to_revenue_ratio": Decimal("0.8"),
    "cost_rise_pct": Decimal(15),
    "daily_rise_pct": Decimal(2),
    "price_change_pct": Decimal(1),
    "unpriced_share_pct": Decimal(1),
    "unattributed_share_pct": Decimal(5),
    "min_calls": 20,
    "customer_window_days": 30,
}
"""``[alerts.thresholds]`` keys and their defaults (docs/alerts.md says what each one does)."""

PRICES_LOOKBACK = timedelta(days=7)
"""Models called this recently are looked up in the current catalog for ``current_prices``."""


def parameters(
    policy: Policy, *, now: datetime, client: Any | None = None, database: str = DEFAULT_DATABASE
) -> dict[str, Any]:
    """Every parameter a rule may bind, from ``policy`` (defaults where it says nothing).

    ``now`` is the evaluation time (a naive datetime is taken as UTC). ``client`` (a
    clickhouse-connect client on the store) lets ``current_prices`` list the models in use.
    """
    now = now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(timezone.utc)
    floors = Floors(policy)
    named = [floors.floor(feature) for feature in floors.features()]
    default = floors.default_floor()
    settings = policy.document.get("alerts", {}).get("thresholds", {})
    thresholds = {
        name: (int(settings.get(name, value)) if isinstance(value, int) else float(settings.get(name, value)))
        for name, value in DEFAULTS.items()
    }
    return {
        "now": now,
        "floor_features": [floor.feature for floor in named],
        "floor_pcts": [float(floor.floor_pct) for floor in named],
        "band_pts": [float(floor.band_pts) for floor in named],
        "default_floor_pct": float(default.floor_pct),
        "default_band_pts": float(default.band_pts),
        "exceptions": [(e.feature, e.owner, e.reason, e.review_date) for e in floors.exceptions],
        **thresholds,
        # margin_daily's allocation rule and the policy's weights (otel_margin.analysis.allocation).
        **allocation(policy=policy).parameters(),
        "current_prices": current_prices(policy, now=now, client=client, database=database) if client is not None else [],
    }


def current_prices(
    policy: Policy, *, now: datetime, client: Any, database: str = DEFAULT_DATABASE
) -> list[tuple[str, str, float, float, float, float]]:
    """(provider, model, input min, input max, output min, output max) per million tokens, as
    the current catalog and ``policy`` price each model called since ``now`` − 7 days.

    Min and max span a tiered price's tiers (and an output's reasoning price), so a call priced
    at any listed tier is not mistaken for a price change. Unpriced models and models priced
    per GPU-second are left out.
    """
    from otel_margin.prices import PriceCatalog

    since = (now - PRICES_LOOKBACK).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    rows = client.query(
        f"SELECT DISTINCT provider, response_model FROM {quote_identifier(database)}.llm_calls_hourly "
        "WHERE hour >= {since:DateTime} AND priced_calls > 0",
        parameters={"since": since},
    ).result_rows
    catalog = PriceCatalog(policy, log_unpriced=False)
    prices = []
    for provider, model in sorted(rows):
        resolved = catalog.lookup(provider, model, at=now)
        if resolved is None or resolved.input is None or resolved.output is None:
            continue
        inputs = _tier_prices(resolved.input)
        outputs = _tier_prices(resolved.output) + (_tier_prices(resolved.reasoning) if resolved.reasoning else [])
        prices.append((provider, model, min(inputs), max(inputs), min(outputs), max(outputs)))
    return prices


def _tier_prices(unit: Any) -> list[float]:
    return [float(unit.base), *(float(tier.per_mtok) for tier in unit.tiers)]
