"""The reviews' settings: ``[reviews]`` in the policy file (validated by ``otel_margin.policy``)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from otel_margin.analysis.reviews.trends import DEFAULT_THRESHOLD_PCT
from otel_margin.policy import Policy

DEFAULT_SMALL_OUTPUT_TOKENS = 256
DEFAULT_SELF_HOSTING_MONTHLY_USD = Decimal(15000)


@dataclass(frozen=True, slots=True)
class ReviewSettings:
    """What the estimates and labels are computed with (each documented in ``docs/reviews.md``)."""

    small_output_tokens: int = DEFAULT_SMALL_OUTPUT_TOKENS
    """A call under this many output tokens is small: a cheaper model may carry it (backlog b)."""
    trend_threshold_pct: Decimal = DEFAULT_THRESHOLD_PCT
    """A cost trend within ± this % of its mean per period is stable."""
    self_hosting_monthly_usd: Decimal = DEFAULT_SELF_HOSTING_MONTHLY_USD
    """Monthly spend on one model class above which self-hosting is worth modelling (the method: $15-25K)."""

    @classmethod
    def from_policy(cls, policy: Policy) -> "ReviewSettings":
        """``[reviews]`` of the policy file, defaults for what it leaves out."""
        table = policy.document.get("reviews", {})
        return cls(
            small_output_tokens=table.get("small_output_tokens", DEFAULT_SMALL_OUTPUT_TOKENS),
            trend_threshold_pct=table.get("trend_threshold_pct", DEFAULT_THRESHOLD_PCT),
            self_hosting_monthly_usd=table.get("self_hosting_monthly_usd", DEFAULT_SELF_HOSTING_MONTHLY_USD),
        )
