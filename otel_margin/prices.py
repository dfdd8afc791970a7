"""The one price lookup: what a call's tokens cost, in exact decimal dollars.

Unit prices come from the user's policy file first (self-hosted and custom models, by
exact id; then the prices of the server the call went to, ``[hosts]``), then from the
``genai-prices`` catalog (shipped with the package, offline) by the response model, falling
back from dated snapshots to the family (``gpt-4o-2099-01-01`` → ``gpt-4o``); contract
discounts from the policy apply last. Resolution is cached per ``(provider, model)`` (and
priced host), so pricing a call after the first is a
dictionary lookup and a handful of exact Decimal multiplications.

A model nobody prices is ``unpriced`` (``total=None``), never $0.

Cache writes kept for one hour (Anthropic's ``ttl: "1h"``, ``Usage.cache_write_1h_tokens``)
are priced at the catalog's or the policy's one-hour write price. Where there is none, they are
billed at twice the input price, Anthropic's published rule (the catalog's own one-hour prices
all follow it), and never below the five-minute write price; the cost then says so with a
``+1h_write_rule`` suffix on ``Cost.price_source``, so the rule is never a silent guess.

On Python 3.10 the catalog is ``genai-prices`` 0.1.13, the last release for 3.10: the same API
as 0.2.x, with fewer models (about 1,800 against 2,300 in 0.2.3) and some older prices. A model
it lacks is unpriced with the usual once-per-model warning, and every price version names the
catalog it came from (``genai-prices-0.1.13``), so such costs are never mistaken for 0.2.x ones.
Add missing models to the policy file, or run on Python 3.11+ for the current catalog.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Callable, Literal

import genai_prices
from genai_prices import data_snapshot
from genai_prices import types as catalog_types

from otel_margin.call import Cost, Usage
from otel_margin.policy import (
    Discount,
    HostPolicy,
    ModelPricePolicy,
    Policy,
    SelfHostedPolicy,
    load_policy_or_empty,
)
from otel_margin.providers import OPENAI_COMPATIBLE

logger = logging.getLogger(__name__)

PriceSource = Literal["catalog", "policy", "self_hosted"]

ONE_HOUR_WRITE_RULE = "+1h_write_rule"
"""Appended to ``Cost.price_source`` when one-hour cache writes were billed by rule (no 1h price)."""

ONE_HOUR_WRITE_FACTOR = Decimal(2)
"""Anthropic bills one-hour cache writes at 2x the base input price (five-minute ones at 1.25x)."""

CATALOG_VERSION = f"genai-prices-{genai_prices.__version__}"
"""The catalog part of every price version."""


@dataclass(frozen=True, slots=True)
class Tier:
    """A tier of a tiered price: applies when the call's total input tokens exceed ``start``."""

    start: int
    per_mtok: Decimal


@dataclass(frozen=True, slots=True)
class UnitPrice:
    """USD per million tokens, possibly tiered by the call's total input tokens.

    Tiers follow the catalog's "cliff" model: once the input exceeds a tier's start, the
    tier's price applies to every token of that component, not only to the excess.
    """

    base: Decimal
    tiers: tuple[Tier, ...] = ()

    def at(self, input_tokens: int) -> Decimal:
        """The price per million tokens for a call with ``input_tokens`` total input."""
        for tier in reversed(self.tiers):
            if input_tokens > tier.start:
                return tier.per_mtok
        return self.base

    def discounted(self, factor: Decimal) -> "UnitPrice":
        """This price multiplied by ``factor`` (``0.85`` for a 15% discount), exactly."""
        return UnitPrice(
            _MONEY.multiply(self.base, factor),
            tuple(Tier(t.start, _MONEY.multiply(t.per_mtok, factor)) for t in self.tiers),
        )


@dataclass(frozen=True, slots=True)
class ResolvedPrice:
    """Everything needed to price one model's calls, and where it came from."""

    priced_as: str
    """The catalog or policy model id whose prices are used."""
    provider: str
    """The catalog provider id, or the policy's provider (``""`` when the policy names none)."""
    source: PriceSource
    version: str
    """``genai-prices-0.2.3``, or ``genai-prices-0.2.3+policy-1a2b3c4d`` when the policy changed it."""
    origin: str
    """Human-readable: ``genai-prices 0.2.3`` or ``otel-margin.toml line 12``."""
    matched_by: str
    """How the model id was found: ``exact``, ``catalog alias`` (the catalog matched a snapshot
    or alias id) or ``date suffix stripped`` (our family fallback)."""
    input: UnitPrice | None = None
    output: UnitPrice | None = None
    cache_read: UnitPrice | None = None
    """``None``: cache reads are billed at the input price."""
    cache_write: UnitPrice | None = None
    """``None``: cache writes are billed at the input price."""
    cache_write_1h: UnitPrice | None = None
    """One-hour cache writes. ``None``: billed at twice the input price (Anthropic's rule), or at
    the cache-write price when that is higher."""
    reasoning: UnitPrice | None = None
    """``None``: reasoning tokens are billed inside output at the output price."""
    request_usd: Decimal | None = None
    """A fixed fee per call, when the catalog has one; it goes to ``Cost.other``."""
    gpu_second_usd: Decimal | None = None
    gpus: int = 1
    discount: Discount | None = None


class PriceCatalog:
    """Prices calls from a policy and the genai-prices catalog. Safe to share across threads."""

    _MAX_CACHED = 4096
    """Model ids come from provider responses; bound the cache against a pathological stream."""

    def __init__(self, policy: Policy | None = None, *, log_unpriced: bool = True) -> None:
        """``log_unpriced=False`` silences the once-per-model warning about unpriced calls."""
        self.policy = policy if policy is not None else Policy()
        self._log_unpriced = log_unpriced
        self._snapshot = data_snapshot.get_snapshot()
        self._policy_version = (
            f"{CATALOG_VERSION}+policy-{self.policy.version}" if self.policy.version else CATALOG_VERSION
        )
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str]] = set()

    def price(
        self,
        provider: str,
        model: str,
        usage: Usage,
        *,
        duration_s: float | None = None,
        at: datetime | None = None,
        server: tuple[str, int | None] | None = None,
    ) -> Cost:
        """The exact cost of one call of ``model`` at ``provider`` with ``usage``.

        ``duration_s`` is needed for models self-hosted per GPU-second; ``at`` (default now)
        selects time-dependent catalog prices; ``server`` (``(address, port)`` the call went to)
        finds the policy's ``[hosts]`` prices. Never raises for an unknown model: it returns
        ``Cost(status="unpriced", total=None)``.
        """
        resolved = self._resolve(provider, model, at, server)
        if resolved is None:
            return Cost(status="unpriced", price_version=self._policy_version)
        if resolved.gpu_second_usd is not None and duration_s is None:
            self._warn_once(
                provider, model, "priced per GPU-second but the call has no duration; pass duration_s"
            )
            return Cost(
                status="unpriced",
                price_version=resolved.version,
                price_source=resolved.source,
                priced_as=resolved.priced_as,
            )
        return _cost(resolved, usage, duration_s)

    def lookup(self, provider: str, model: str, *, at: datetime | None = None) -> ResolvedPrice | None:
        """The unit prices ``model`` at ``provider`` is priced with, or ``None`` when unpriced."""
        return self._resolve(provider, model, at)

    def _resolve(
        self, provider: str, model: str, at: datetime | None, server: tuple[str, int | None] | None = None
    ) -> ResolvedPrice | None:
        host = self.policy.host(*server) if server is not None else None
        key = (provider, model) if host is None else (provider, model, host.host)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._build_entry(key, host, server)
        if entry.fixed is not None or entry.model_info is None:
            return entry.fixed
        return entry.at(at or datetime.now(timezone.utc), self._catalog_price)

    def _build_entry(
        self, key: tuple[str, ...], host: HostPolicy | None, server: tuple[str, int | None] | None
    ) -> "_Entry":
        provider, model = key[0], key[1]
        entry = self._find(provider, model, host)
        with self._lock:
            if len(self._entries) >= self._MAX_CACHED:
                self._entries.clear()
            entry = self._entries.setdefault(key, entry)
        if entry.fixed is None and entry.model_info is None:
            if entry.uncataloged_provider and server is not None:
                # Nobody priced this server's provider: naming the host is the one fix for all its models.
                where = f"{server[0]}:{server[1]}" if server[1] is not None else server[0]
                fix = (f'map the server in the policy file: [hosts."{where}"] with provider = "..." '
                       "(a catalog provider) or its own prices, see docs/policy.md")
            else:
                fix = "add it to the policy file ([prices.models] or [prices.self_hosted], see docs/policy.md)"
            self._warn_once(provider, model, f"{entry.reason}; {fix}")
        return entry

    def _find(self, provider: str, model: str, host: HostPolicy | None = None) -> "_Entry":
        key = model.strip().lower()
        provider_key = provider.strip().lower()
        hosted = self.policy.self_hosted.get(key)
        if hosted is not None and (hosted.provider is None or hosted.provider.lower() == provider_key):
            return _Entry(fixed=self._self_hosted_price(hosted))
        custom = self.policy.models.get(key)
        if custom is not None and (custom.provider is None or custom.provider.lower() == provider_key):
            return _Entry(fixed=self._custom_price(custom))
        if host is not None and host.prices is not None:
            # What every model served at this host costs: after the entries that name the model.
            return _Entry(fixed=replace(self._self_hosted_price(host.prices), priced_as=model))
        catalog_provider = _CATALOG_PROVIDER_ALIASES.get(provider_key, provider_key)
        if not catalog_provider:
            return _Entry(reason="no provider given")
        if catalog_provider in _UNCATALOGED or (
            data_snapshot.find_provider_by_id(self._snapshot.providers, catalog_provider) is None
        ):
            return _Entry(reason=f"provider '{provider}' is not in the {CATALOG_VERSION} catalog", uncataloged=True)
        for candidate, matched_by in _candidates(key):
            try:
                found_provider, info = self._snapshot.find_provider_model(
                    candidate, None, catalog_provider, None
                )
            except LookupError:
                continue
            if matched_by == "exact" and info.id.lower() != key:
                matched_by = "catalog alias"
            context = _CatalogContext(provider, model, found_provider.id, info.id, matched_by)
            if isinstance(info.prices, catalog_types.ModelPrice):
                fixed = self._catalog_price(context, info.prices)
                if fixed is None:
                    return _Entry(reason=f"the catalog has no per-token price for '{info.id}'")
                return _Entry(fixed=fixed)
            return _Entry(model_info=info, context=context)
        return _Entry(reason=f"model '{model}' is not in the {CATALOG_VERSION} catalog for '{provider}'")

    def _catalog_price(
        self, context: "_CatalogContext", prices: catalog_types.ModelPrice
    ) -> ResolvedPrice | None:
        unit = {name: _unit_price(getattr(prices, name, None)) for name in _CATALOG_PRICE_KEYS}
        if unit["input_mtok"] is None and unit["output_mtok"] is None:
            return None
        requests = getattr(prices, "requests_kcount", None)
        resolved = ResolvedPrice(
            priced_as=context.priced_as,
            provider=context.catalog_provider,
            source="catalog",
            version=CATALOG_VERSION,
            origin=f"genai-prices {genai_prices.__version__}",
            matched_by=context.matched_by,
            input=unit["input_mtok"],
            output=unit["output_mtok"],
            cache_read=unit["cache_read_mtok"],
            cache_write=unit["cache_write_mtok"],
            cache_write_1h=unit["cache_write_1h_mtok"],
            reasoning=unit["output_reasoning_mtok"],
            request_usd=_MONEY.divide(requests, 1000) if isinstance(requests, Decimal) else None,
        )
        providers = (context.provider, context.catalog_provider)
        models = (context.model, context.priced_as)
        for discount in self.policy.discounts:
            if discount.applies_to(providers, models):
                return _apply_discount(resolved, discount, self._policy_version, self.policy)
        return resolved

    def _custom_price(self, custom: ModelPricePolicy) -> ResolvedPrice:
        return ResolvedPrice(
            priced_as=custom.model,
            provider=custom.provider or "",
            source="policy",
            version=self._policy_version,
            origin=_policy_origin(self.policy, custom.line),
            matched_by="exact",
            input=UnitPrice(custom.input_per_mtok),
            output=UnitPrice(custom.output_per_mtok),
            cache_read=_optional_unit(custom.cache_read_per_mtok),
            cache_write=_optional_unit(custom.cache_write_per_mtok),
            cache_write_1h=_optional_unit(custom.cache_write_1h_per_mtok),
        )

    def _self_hosted_price(self, hosted: SelfHostedPolicy) -> ResolvedPrice:
        return ResolvedPrice(
            priced_as=hosted.model,
            provider=hosted.provider or "",
            source="self_hosted",
            version=self._policy_version,
            origin=_policy_origin(self.policy, hosted.line),
            matched_by="exact",
            input=_optional_unit(hosted.input_per_mtok),
            output=_optional_unit(hosted.output_per_mtok),
            cache_read=_optional_unit(hosted.cache_read_per_mtok),
            cache_write=_optional_unit(hosted.cache_write_per_mtok),
            cache_write_1h=_optional_unit(hosted.cache_write_1h_per_mtok),
            gpu_second_usd=hosted.gpu_second_usd,
            gpus=hosted.gpus,
        )

    def _warn_once(self, provider: str, model: str, reason: str) -> None:
        if not self._log_unpriced or (provider, model) in self._warned:
            return
        self._warned.add((provider, model))
        logger.warning("otel-margin: calls to %r at %r are unpriced: %s", model, provider, reason)


def get_catalog(policy: Policy | None = None) -> PriceCatalog:
    """The process-wide catalog, built on first use (thread-safe) from ``policy``.

    ``policy`` defaults to the policy file; a file that fails validation is logged and
    ignored (:func:`~otel_margin.policy.load_policy_or_empty`). Once built, the catalog is
    returned as it is, whatever ``policy`` says.
    """
    catalog = _default_catalog
    if catalog is not None:
        return catalog
    with _default_lock:
        if _default_catalog is None:
            set_catalog(PriceCatalog(load_policy_or_empty() if policy is None else policy))
        assert _default_catalog is not None
        return _default_catalog


def set_catalog(catalog: PriceCatalog | None) -> None:
    """Replace the process-wide catalog (``None``: rebuild lazily on next use). For tests."""
    global _default_catalog
    _default_catalog = catalog


def catalog_provider_id(provider: str) -> str | None:
    """The catalog's id of ``provider`` (a ``gen_ai.provider.name`` such as ``x_ai``, or a catalog
    id such as ``x-ai``), or ``None`` when the catalog prices no such provider."""
    key = provider.strip().lower()
    catalog_id = _CATALOG_PROVIDER_ALIASES.get(key, key)
    if not catalog_id or catalog_id in _UNCATALOGED:
        return None
    found = data_snapshot.find_provider_by_id(data_snapshot.get_snapshot().providers, catalog_id)
    return found.id if found is not None else None


def provider_names() -> list[str]:
    """Every provider name :func:`catalog_provider_id` knows: the catalog's ids and the
    ``gen_ai.provider.name`` values mapped to them, sorted."""
    ids = {provider.id for provider in data_snapshot.get_snapshot().providers}
    return sorted(ids | set(_CATALOG_PROVIDER_ALIASES))


_default_catalog: PriceCatalog | None = None
_default_lock = threading.Lock()


# --- exact arithmetic -------------------------------------------------------------------------

_MONEY = Context(prec=60, rounding=ROUND_HALF_EVEN)
"""A private context: the application's decimal context (precision, traps) never changes our sums."""

_ZERO = Decimal(0)


def _cost(resolved: ResolvedPrice, usage: Usage, duration_s: float | None) -> Cost:
    total_input = usage.input_tokens
    input_price = resolved.input.at(total_input) if resolved.input is not None else _ZERO

    def per_mtok(tokens: int, unit: UnitPrice | None, fallback: Decimal) -> Decimal:
        if not tokens:
            return _ZERO
        price = unit.at(total_input) if unit is not None else fallback
        return _MONEY.scaleb(_MONEY.multiply(price, tokens), -6)

    input_cost = per_mtok(usage.uncached_input_tokens, None, input_price)
    cache_read = per_mtok(usage.cache_read_tokens, resolved.cache_read, input_price)
    one_hour = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
    cache_write = per_mtok(usage.cache_write_tokens - one_hour, resolved.cache_write, input_price)
    source = resolved.source
    if one_hour:
        by_rule = _ZERO
        if resolved.cache_write_1h is None:  # no listed 1h price: Anthropic's rule, and the cost says so
            five_minute = resolved.cache_write.at(total_input) if resolved.cache_write is not None else input_price
            by_rule = max(_MONEY.multiply(input_price, ONE_HOUR_WRITE_FACTOR), five_minute)
            source = f"{source}{ONE_HOUR_WRITE_RULE}"
        cache_write = _MONEY.add(cache_write, per_mtok(one_hour, resolved.cache_write_1h, by_rule))
    output_price = resolved.output.at(total_input) if resolved.output is not None else _ZERO
    if resolved.reasoning is not None:
        reasoning = min(usage.reasoning_tokens, usage.output_tokens)
        output = _MONEY.add(
            per_mtok(usage.output_tokens - reasoning, None, output_price),
            per_mtok(reasoning, resolved.reasoning, output_price),
        )
    else:
        output = per_mtok(usage.output_tokens, None, output_price)
    other = resolved.request_usd or _ZERO
    if resolved.gpu_second_usd is not None and duration_s is not None:
        seconds = Decimal(repr(max(float(duration_s), 0.0)))
        other = _MONEY.add(other, _MONEY.multiply(_MONEY.multiply(seconds, resolved.gpus), resolved.gpu_second_usd))
    total = _MONEY.add(_MONEY.add(_MONEY.add(input_cost, cache_read), _MONEY.add(cache_write, output)), other)
    return Cost(
        status="estimated" if usage.source == "estimated" else "priced",
        total=total,
        input=input_cost,
        cache_read=cache_read,
        cache_write=cache_write,
        output=output,
        other=other,
        price_version=resolved.version,
        price_source=source,
        priced_as=resolved.priced_as,
    )


# --- resolution details ------------------------------------------------------------------------

_CATALOG_PRICE_KEYS = (
    "input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "cache_write_1h_mtok", "output_reasoning_mtok"
)

_CATALOG_PROVIDER_ALIASES = {
    # gen_ai.provider.name values genai-prices does not match by itself (or matches to another
    # provider: its fuzzy match takes azure.ai.openai for OpenAI, whose prices Azure's may not be).
    "x_ai": "x-ai",
    "azure.ai.inference": "azure",
    "azure.ai.openai": "azure",
    "gcp.gen_ai": "google",
}

_UNCATALOGED = frozenset({OPENAI_COMPATIBLE})
"""Our own provider names the catalog must not match fuzzily (its ``openai`` matches any name
containing "openai")."""

_DATE_SUFFIXES = (
    re.compile(r"-\d{4}-\d{2}-\d{2}$"),  # gpt-4o-mini-2024-07-18
    re.compile(r"-20\d{6}$"),  # claude-3-5-sonnet-20241022
    re.compile(r"@20\d{6}$"),  # Vertex AI: claude-3-5-sonnet@20241022
    re.compile(r"-latest$"),  # claude-3-5-sonnet-latest
)


def _candidates(model: str) -> list[tuple[str, str]]:
    """The model id, then the family with date suffixes stripped (repeatedly)."""
    candidates = [(model, "exact")]
    current = model
    while True:
        for pattern in _DATE_SUFFIXES:
            stripped = pattern.sub("", current)
            if stripped != current and stripped:
                break
        else:
            return candidates
        current = stripped
        candidates.append((current, "date suffix stripped"))


@dataclass(frozen=True, slots=True)
class _CatalogContext:
    provider: str
    model: str
    catalog_provider: str
    priced_as: str
    matched_by: str


class _Entry:
    """A cached resolution: a fixed price, time-dependent catalog prices, or the reason for none."""

    __slots__ = ("fixed", "model_info", "context", "reason", "uncataloged_provider", "_by_price")

    def __init__(
        self,
        *,
        fixed: ResolvedPrice | None = None,
        model_info: catalog_types.ModelInfo | None = None,
        context: _CatalogContext | None = None,
        reason: str = "",
        uncataloged: bool = False,
    ) -> None:
        self.fixed = fixed
        self.model_info = model_info
        self.context = context
        self.reason = reason
        self.uncataloged_provider = uncataloged
        """No price because the catalog does not know the provider (not only the model)."""
        self._by_price: dict[int, ResolvedPrice | None] = {}

    def at(
        self,
        when: datetime,
        build: Callable[[_CatalogContext, catalog_types.ModelPrice], ResolvedPrice | None],
    ) -> ResolvedPrice | None:
        """The price in force at ``when``; each of the model's price sets is converted once."""
        assert self.model_info is not None and self.context is not None
        prices = self.model_info.get_prices(when)
        # The catalog's ModelPrice objects live as long as the snapshot we hold, so id() is stable.
        key = id(prices)
        if key not in self._by_price:
            self._by_price[key] = build(self.context, prices)
        return self._by_price[key]


def _unit_price(value: object) -> UnitPrice | None:
    if isinstance(value, Decimal):
        return UnitPrice(value)
    if isinstance(value, catalog_types.TieredPrices):
        return UnitPrice(value.base, tuple(Tier(t.start, t.price) for t in value.tiers))
    return None


def _optional_unit(value: Decimal | None) -> UnitPrice | None:
    return UnitPrice(value) if value is not None else None


def _apply_discount(resolved: ResolvedPrice, discount: Discount, version: str, policy: Policy) -> ResolvedPrice:
    factor = _MONEY.divide(_MONEY.subtract(Decimal(100), discount.percent), Decimal(100))

    def scaled(unit: UnitPrice | None) -> UnitPrice | None:
        return unit.discounted(factor) if unit is not None else None

    return replace(
        resolved,
        version=version,
        origin=f"{resolved.origin}, discount from {_policy_origin(policy, discount.line)}",
        input=scaled(resolved.input),
        output=scaled(resolved.output),
        cache_read=scaled(resolved.cache_read),
        cache_write=scaled(resolved.cache_write),
        cache_write_1h=scaled(resolved.cache_write_1h),
        reasoning=scaled(resolved.reasoning),
        request_usd=_MONEY.multiply(resolved.request_usd, factor) if resolved.request_usd is not None else None,
        discount=discount,
    )


def _policy_origin(policy: Policy, line: int | None) -> str:
    return f"{policy.display_name} line {line}" if line is not None else policy.display_name
