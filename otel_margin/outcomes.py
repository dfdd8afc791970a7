"""Outcomes: what a unit of work achieved, recorded once, and the revenue it earns.

::

    with unit("ticket", id=ticket.id):
        ...                                   # the LLM calls that work on the ticket
        outcome("resolved")                   # earns the feature's outcome price, if any

:func:`outcome` records the outcome of the current unit (or of ``unit=``, an id or a
:class:`~otel_margin.units.unit`) as an ``margin.outcome`` span (:mod:`otel_margin.record_spans`),
which the exporter — or the collector view — turns into a row of the ``outcomes`` table.
Recording again for the same unit replaces the earlier outcome: ``outcomes`` is a
``ReplacingMergeTree`` keyed by unit id whose version is the time of recording, and every reader
reads it ``FINAL`` (the newest wins; a retried outcome is counted once).

Revenue: ``revenue_usd`` when given; else the price of this status in the policy file's
``[features.NAME.outcome_prices]`` for the feature in effect (``attribute(feature=...)``); a
status that table does not list earns 0 (a failed unit earns nothing). A feature without
outcome prices records no outcome revenue (NULL).
"""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any, Mapping

from otel_margin import attributes as attr
from otel_margin import record_spans
from otel_margin.attribution import MAX_TEXT_LENGTH, _as_money, current_attribution
from otel_margin.telemetry import money
from otel_margin.units import current_unit

STATUSES = ("resolved", "failed", "abandoned", "escalated")
"""The statuses the report knows by name; any other non-empty name is stored as it is."""

_prices: dict[str, Mapping[str, Decimal]] | None = None
_prices_lock = threading.Lock()


def outcome(
    status: str,
    revenue_usd: Decimal | str | int | float | None = None,
    quality: Decimal | str | int | float | None = None,
    unit: Any = None,
) -> str:
    """Record that the unit of work ended with ``status``; returns the unit id it was recorded for.

    Raises ``ValueError`` (at the line that called it) for an empty or over-long status, a
    revenue or quality that is not a decimal amount, and when there is no unit to record it
    for (outside any :func:`~otel_margin.unit` and no ``unit=``).
    """
    if not isinstance(status, str) or not status or len(status) > MAX_TEXT_LENGTH:
        raise ValueError(
            f"outcome(status={status!r}): not a name of 1 to {MAX_TEXT_LENGTH} characters; "
            f"use one of {', '.join(STATUSES)} or your own short name"
        )
    unit_id, kind = _which_unit(unit)
    revenue = amount("outcome", "revenue_usd", revenue_usd)
    score = amount("outcome", "quality", quality)
    attribution = current_attribution()
    if revenue is None and attribution.feature is not None:
        prices = outcome_prices().get(attribution.feature)
        if prices:
            revenue = prices.get(status, Decimal(0))
    attributes: dict[str, Any] = {
        attr.MARGIN_UNIT_ID: unit_id,
        attr.MARGIN_UNIT_KIND: kind,
        attr.MARGIN_OUTCOME_STATUS: status,
        attr.MARGIN_FEATURE: attribution.feature or attr.UNATTRIBUTED,
    }
    for key, value in ((attr.MARGIN_CUSTOMER, attribution.customer), (attr.MARGIN_TIER, attribution.tier),
                       (attr.MARGIN_COHORT, attribution.cohort)):
        if value is not None:
            attributes[key] = value
    if revenue is not None:
        attributes[attr.MARGIN_OUTCOME_REVENUE_USD] = money(revenue)
    if score is not None:
        attributes[attr.MARGIN_OUTCOME_QUALITY] = money(score)
    record_spans.emit(f"margin.outcome {status}", attributes)
    return unit_id


def outcome_prices() -> Mapping[str, Mapping[str, Decimal]]:
    """Outcome prices per feature, from the policy the instrumentors loaded (else read once now)."""
    global _prices
    if _prices is None:
        with _prices_lock:
            if _prices is None:
                from otel_margin.policy import load_policy_or_empty

                use_policy(load_policy_or_empty())
    return _prices  # type: ignore[return-value]


def use_policy(policy: Any) -> None:
    """Take the outcome prices of ``policy`` (the instrumentors call this when they load it)."""
    global _prices
    _prices = {name: dict(feature.outcome_prices) for name, feature in policy.features.items()
               if feature.outcome_prices}


def amount(function: str, name: str, value: Any) -> Decimal | None:
    """``value`` as exact money for ``function(name=...)``, checked as attribute() checks revenue."""
    try:
        return _as_money(name, value)
    except ValueError as error:
        raise ValueError(str(error).replace("attribute(", f"{function}(", 1)) from None


def _which_unit(given: Any) -> tuple[str, str]:
    if given is None:
        found = current_unit()
        if found is None:
            raise ValueError(
                "outcome(): no unit of work to record it for; call it inside `with unit(kind):` or pass "
                "unit=<the unit's id>"
            )
        return found.id, found.kind
    if isinstance(given, str):
        if not given or len(given) > MAX_TEXT_LENGTH:
            raise ValueError(f"outcome(unit={given[:40]!r}): not an id of 1 to {MAX_TEXT_LENGTH} characters")
        found = current_unit()
        return given, found.kind if found is not None and found.id == given else ""
    unit_id, kind = getattr(given, "id", None), getattr(given, "kind", "")
    if not isinstance(unit_id, str) or not unit_id:
        raise ValueError(f"outcome(unit={given!r}): a unit that has not been entered has no id; pass its id")
    return unit_id, kind if isinstance(kind, str) else ""
