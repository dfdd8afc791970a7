"""The provider-neutral call record every instrumentor fills and every guardrail sees.

One :class:`LLMCall` is built per patched SDK call. The instrumentor fills the request
side, the guardrail hooks read it (and may change ``params``), the provider response
fills ``usage``, the price catalog fills ``cost``, and the telemetry layer turns the
whole record into span attributes and metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

UsageSource = Literal["provider", "estimated", "cache"]
"""``cache``: a cache hit answered; no provider was called and no tokens were billed."""
CostStatus = Literal["priced", "estimated", "unpriced", "error", "invalid"]
"""``error``: the call failed and the provider reported no usage, so it cost nothing (see
:func:`otel_margin.pipeline._book_failure`); ``unpriced``: usage without a price; ``invalid``:
usage beyond what one call can use, refused rather than priced (:mod:`otel_margin.usage_bounds`)."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one call, in semantic-convention terms.

    ``input_tokens`` includes cache reads and cache writes; ``output_tokens`` includes
    reasoning tokens. Providers disagree on this (Anthropic's ``input_tokens`` excludes
    cached input); instrumentors normalise before building a ``Usage``.
    ``cache_write_1h_tokens`` is the part of ``cache_write_tokens`` written with a one-hour
    time to live (Anthropic's ``cache_creation.ephemeral_1h_input_tokens``), billed at a
    higher price than the default five-minute writes; it is included in ``cache_write_tokens``.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0
    """The one-hour part of ``cache_write_tokens`` (included in it, never added to it)."""
    source: UsageSource = "provider"

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens billed at the plain input price."""
        return max(self.input_tokens - self.cache_read_tokens - self.cache_write_tokens, 0)


@dataclass(frozen=True, slots=True)
class Cost:
    """Exact cost of goods of one call, split into the components it was priced by."""

    status: CostStatus
    total: Decimal | None = None
    input: Decimal = Decimal(0)
    cache_read: Decimal = Decimal(0)
    cache_write: Decimal = Decimal(0)
    output: Decimal = Decimal(0)
    other: Decimal = Decimal(0)
    price_version: str = ""
    price_source: str = ""
    """``catalog`` | ``policy`` | ``self_hosted``; with ``+1h_write_rule`` appended when one-hour
    cache writes had no one-hour price and were billed by rule (see docs/policy.md)."""
    priced_as: str = ""
    """The model id whose prices were used (``gpt-4o-mini`` for ``gpt-4o-mini-2024-07-18``)."""


@dataclass(frozen=True, slots=True)
class Attribution:
    """What a call was made for. ``None`` means "not said"; the record says ``unattributed``."""

    feature: str | None = None
    customer: str | None = None
    tier: str | None = None
    cohort: str | None = None
    revenue_usd: Decimal | None = None
    source: str = "default"

    def merged_over(self, outer: "Attribution") -> "Attribution":
        """This attribution with every unset key taken from ``outer`` (inner wins per key)."""
        return Attribution(
            feature=self.feature if self.feature is not None else outer.feature,
            customer=self.customer if self.customer is not None else outer.customer,
            tier=self.tier if self.tier is not None else outer.tier,
            cohort=self.cohort if self.cohort is not None else outer.cohort,
            revenue_usd=self.revenue_usd if self.revenue_usd is not None else outer.revenue_usd,
            source=self.source if self.feature is not None else outer.source,
        )


@dataclass(slots=True)
class LLMCall:
    """One LLM call on its way through the guardrails, the provider and the telemetry.

    Mutable on purpose: hooks and the instrumentor fill it in as the call progresses.
    Plugins write what they did into ``attributes`` (``margin.cache.result``,
    ``margin.saved.usd``, ...), which are copied onto the span as they are.
    """

    provider: str
    """The ``gen_ai.provider.name`` value: ``openai``, ``anthropic``, ``azure.ai.openai``, ``deepseek``, ...
    (:mod:`otel_margin.providers`)."""
    operation: str
    """``chat`` | ``embeddings`` | ... (the ``gen_ai.operation.name`` value)."""
    request_model: str
    params: dict[str, Any]
    """The full keyword arguments of the SDK call. Guardrails may change them."""
    attribution: Attribution
    api: str = ""
    """The SDK surface: ``chat.completions`` | ``responses`` | ``embeddings`` | ``messages``."""
    server_address: str | None = None
    """The host the SDK client sends to (``server.address``); ``None`` when not known."""
    server_port: int | None = None
    """Its port (``server.port``; 443 for an ``https`` URL without one)."""
    stream: bool = False
    estimated_input_tokens: int | None = None
    response_model: str | None = None
    response_id: str | None = None
    finish_reasons: tuple[str, ...] = ()
    usage: Usage | None = None
    cost: Cost | None = None
    error_type: str | None = None
    duration_s: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    """Extra span attributes set by guardrails; keys from :mod:`otel_margin.attributes`."""
    notes: dict[str, Any] = field(default_factory=dict)
    """Private state of the instrumentor (e.g. "we injected include_usage"); never exported."""

    @property
    def feature(self) -> str | None:
        return self.attribution.feature

    @property
    def customer(self) -> str | None:
        return self.attribution.customer

    @property
    def model(self) -> str:
        """The model the call is (now) asking for; routing changes it."""
        return str(self.params.get("model", self.request_model))


    def estimated_cost(self, output_tokens: int | None = None) -> Decimal | None:
        """What this call will cost before it runs, exact dollars; ``None`` when its model is unpriced.

        Prices :attr:`model` at :attr:`provider` (and the policy's prices for its server) with
        the pre-call input-token count and ``output_tokens``, by default the most output the
        request allows (``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens``), or
        none when it sets no limit (then the estimate is the input's cost only, a lower bound).
        See :mod:`otel_margin.estimate`.
        """
        from otel_margin.estimate import estimate_call_cost

        return estimate_call_cost(self, output_tokens)
