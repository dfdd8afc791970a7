"""How subscription revenue and period costs are allocated: the rule and the policy's weights.

Revenue that names no feature (a $99 seat) and fixed costs of a period (GPU hosting) are split
over the usage of their period by ``margin_daily`` (``otel_margin/sql/margin_daily_view.sql``).
This module holds what that split needs from outside the warehouse:

* ``allocate_by`` — the weight of each part: ``calls`` (inference calls, the method's rule and
  the default), ``cost``, ``tokens``, or ``value`` (inference calls times the feature's stated
  value weight);
* value weights per feature, ``[features.X] value_weight = 3`` in the policy file (a feature not
  listed weighs 1);
* the AI share of each tier's subscription, ``[tiers.pro] ai_share_pct = 40`` (the part of a
  seat that pays for AI; the rest is not AI revenue; a tier not listed counts 100 %).

They reach SQL as bound array parameters (``value_features`` / ``value_weights``, ``ai_tiers`` /
``ai_share_pcts``) that the view turns into maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal, Mapping, get_args

from otel_margin.policy import Policy, load_policy

AllocateBy = Literal["calls", "cost", "tokens", "value"]
ALLOCATE_BY: tuple[str, ...] = get_args(AllocateBy)
DEFAULT_ALLOCATE_BY: AllocateBy = "calls"
"""The method's rule: revenue follows the share of inference calls."""


def _frozen(values: Mapping[str, Decimal] | None = None) -> Mapping[str, Decimal]:
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True, slots=True)
class Allocation:
    """The allocation rule of one query: its weight and the policy's value weights and AI shares."""

    allocate_by: AllocateBy = DEFAULT_ALLOCATE_BY
    value_weights: Mapping[str, Decimal] = field(default_factory=_frozen)
    """Feature → stated value weight (``value`` allocation only); 1 when not listed."""
    ai_shares: Mapping[str, Decimal] = field(default_factory=_frozen)
    """Tier → percent of its unattributed subscription revenue that is AI revenue; 100 when not listed."""

    def __post_init__(self) -> None:
        if self.allocate_by not in ALLOCATE_BY:
            raise ValueError(f"allocate_by {self.allocate_by!r} is not one of {', '.join(ALLOCATE_BY)}")

    def parameters(self) -> dict[str, Any]:
        """The bound parameters ``margin_daily`` takes for this rule."""
        features = sorted(self.value_weights)
        tiers = sorted(self.ai_shares)
        return {
            "allocate_by": self.allocate_by,
            "value_features": features,
            "value_weights": [self.value_weights[name] for name in features],
            "ai_tiers": tiers,
            "ai_share_pcts": [self.ai_shares[name] for name in tiers],
        }


def allocation(allocate_by: str = DEFAULT_ALLOCATE_BY, policy: Policy | None = None) -> Allocation:
    """The rule ``allocate_by`` with the value weights and AI shares of ``policy``.

    ``policy`` ``None`` reads the policy file (``OTEL_MARGIN_POLICY``, else ``./otel-margin.toml``,
    else none); a file that is not valid raises :class:`~otel_margin.policy.PolicyError` naming
    the line and the fix.
    """
    if policy is None:
        policy = load_policy()
    document = policy.document
    weights = {
        name: table["value_weight"]
        for name, table in (document.get("features") or {}).items()
        if "value_weight" in table
    }
    shares = {
        name: table["ai_share_pct"]
        for name, table in (document.get("tiers") or {}).items()
        if "ai_share_pct" in table
    }
    return Allocation(allocate_by, _frozen(weights), _frozen(shares))  # type: ignore[arg-type]
