"""Run a call through the guardrail hooks: limits → cache → routing, then record.

This module owns the values plugins return (:class:`LimitDecision`, :class:`CacheHit`),
the one exception a blocked call raises (:class:`MarginLimitExceeded`) and the fail-open
rule: a plugin's own failure is logged and counted and never breaks the user's call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Literal

from otel_margin import attributes as attr
from otel_margin import guardrail_calls
from otel_margin.call import LLMCall
from otel_margin.pluginhost import pm
from otel_margin.replay import Exchange

logger = logging.getLogger(__name__)

_ACTION_RANK = {"allow": 0, "cap": 1, "block": 2}


@dataclass(frozen=True, slots=True)
class LimitDecision:
    """What a limit plugin decided about a call.

    ``limit`` names the limit (``"daily budget for acme"``); ``current_spend`` and
    ``limit_usd`` let the blocked-call message say how far over the limit the caller is.
    """

    action: Literal["allow", "cap", "block"]
    limit: str
    current_spend_usd: Decimal | None = None
    limit_usd: Decimal | None = None
    max_output_tokens: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CacheHit:
    """A stored answer to give the caller instead of calling the provider.

    Give ``exchange``, the provider's HTTP response as ``margin_record`` received it: the SDK
    then builds its own return value from it, of the right type on every surface (sync, async,
    raw, streaming, stream managers). Or give ``response``, returned to the caller as is (it must
    be what the SDK would have returned for this very call). ``saved_usd`` is the cost the
    original call had (the cost avoided); ``kind`` (``exact`` | ``semantic``) becomes
    ``margin.cache.result``.
    """

    response: Any = None
    saved_usd: Decimal | None = None
    kind: str = "exact"
    exchange: Exchange | None = None


class MarginLimitExceeded(Exception):
    """Raised into the caller when a guardrail blocks an LLM call.

    The one documented exception type of otel-margin. Its message names the customer,
    the feature, the limit and the current spend; the same facts are attributes.
    """

    def __init__(self, *, customer: str | None, feature: str | None, decision: LimitDecision) -> None:
        self.customer = customer
        self.feature = feature
        self.limit = decision.limit
        self.current_spend_usd = decision.current_spend_usd
        self.limit_usd = decision.limit_usd
        self.decision = decision
        spend = "unknown" if decision.current_spend_usd is None else f"${decision.current_spend_usd}"
        of_limit = "" if decision.limit_usd is None else f" of ${decision.limit_usd}"
        reason = f": {decision.reason}" if decision.reason else ""
        super().__init__(
            f"LLM call blocked by {decision.limit} for customer {customer or attr.UNATTRIBUTED!r}, "
            f"feature {feature or attr.UNATTRIBUTED!r}; current spend {spend}{of_limit}{reason}"
        )


CACHE_HIT_NOTE = "cache.hit"
"""Set in ``call.notes`` once a cache will answer the call: limit plugins see it (a spend budget
lets a free answer through; a rate limit may still count or block it), record plugins too."""


def before_call(call: LLMCall, on_plugin_error: Callable[[str], None]) -> CacheHit | None:
    """Apply the cache, then limits, then routing to ``call``; return a cache hit or ``None``.

    The cache looks first, at the request as asked, so limits know whether the call will cost
    anything: a hit is still subject to a block (a rate limit) but not to an output cap (its
    answer exists already); a miss whose request a cap changes is not stored under the uncapped
    request's key (the cache plugin keys at lookup). Raises :class:`MarginLimitExceeded` when a
    limit blocks the call; every other plugin failure is passed to ``on_plugin_error`` and the
    call proceeds.
    """
    in_use = pm.hooks_in_use()
    if not in_use or guardrail_calls.is_own(call):
        return None  # a guardrail's own call (the cache's embedding) is part of another call's guardrails
    hook = pm.hook
    hit = None
    if "margin_cache_lookup" in in_use:
        found = _first(hook.margin_cache_lookup, call, on_plugin_error)
        if isinstance(found, CacheHit) and (found.exchange is not None or found.response is not None):
            hit = found
            call.notes[CACHE_HIT_NOTE] = True
    if "margin_limit_check" in in_use:
        capped = _apply_limits(call, _call_each(hook.margin_limit_check, call, on_plugin_error), hit is not None)
        if capped:
            call.notes[CACHE_UNSTORABLE_NOTE] = True
    if hit is not None:
        call.attributes[attr.MARGIN_CACHE_RESULT] = hit.kind
        if hit.saved_usd is not None:
            call.attributes[attr.MARGIN_SAVED_USD] = format(hit.saved_usd, "f")
        return hit
    if "margin_route" in in_use:
        model = _first(hook.margin_route, call, on_plugin_error)
        if isinstance(model, str) and model and model != call.model:
            call.attributes[attr.MARGIN_ROUTE_FROM_MODEL] = call.model
            call.params["model"] = model
    return None


CACHE_UNSTORABLE_NOTE = "cache.unstorable"
"""Set in ``call.notes`` when a limit changed the request after the cache keyed it: its answer
must not be stored under the key of the request as asked."""


def after_call(
    call: LLMCall, response: Any, on_plugin_error: Callable[[str], None], exchange: Exchange | None = None
) -> None:
    """Run every ``margin_record`` implementation; failures are reported, never raised."""
    if "margin_record" in pm.hooks_in_use():
        _call_each(pm.hook.margin_record, call, on_plugin_error, response=response, exchange=exchange)


def _apply_limits(call: LLMCall, decisions: list[Any], cached: bool = False) -> bool:
    """Apply the strictest decision; True when a cap changed the request. A cached call is not capped."""
    strictest: LimitDecision | None = None
    cap: int | None = None
    for decision in decisions:
        if not isinstance(decision, LimitDecision):
            continue
        if decision.action == "cap" and decision.max_output_tokens is not None:
            cap = decision.max_output_tokens if cap is None else min(cap, decision.max_output_tokens)
        if strictest is None or _ACTION_RANK[decision.action] > _ACTION_RANK[strictest.action]:
            strictest = decision
    if strictest is None:
        return False
    action = "allow" if cached and strictest.action == "cap" else strictest.action
    call.attributes[attr.MARGIN_LIMIT_ACTION] = action
    call.attributes[attr.MARGIN_LIMIT_NAME] = strictest.limit
    if strictest.current_spend_usd is not None:
        call.attributes[attr.MARGIN_LIMIT_SPEND_USD] = format(strictest.current_spend_usd, "f")
    if strictest.limit_usd is not None:
        call.attributes[attr.MARGIN_LIMIT_USD] = format(strictest.limit_usd, "f")
    if action == "block":
        raise MarginLimitExceeded(customer=call.customer, feature=call.feature, decision=strictest)
    if cap is not None and not cached:
        key = _output_limit_key(call)
        current = call.params.get(key)
        if not isinstance(current, int) or current > cap:
            call.params[key] = cap
            call.attributes[attr.MARGIN_LIMIT_MAX_OUTPUT_TOKENS] = cap
            return True
    return False


def _output_limit_key(call: LLMCall) -> str:
    if call.api == "responses":
        return "max_output_tokens"
    if call.api == "chat.completions" and "max_tokens" not in call.params:
        return "max_completion_tokens"
    return "max_tokens"


def _call_each(hook: Any, call: LLMCall, on_plugin_error: Callable[[str], None], **extra: Any) -> list[Any]:
    results = []
    for impl in reversed(hook.get_hookimpls()):
        try:
            result = _invoke(impl, call, extra)
        except MarginLimitExceeded:
            raise
        except Exception:  # noqa: BLE001 - fail open
            _report(impl.plugin_name, hook.name, on_plugin_error, call)
            continue
        if result is not None:
            results.append(result)
    return results


def _first(hook: Any, call: LLMCall, on_plugin_error: Callable[[str], None]) -> Any:
    for impl in reversed(hook.get_hookimpls()):
        try:
            result = _invoke(impl, call, {})
        except Exception:  # noqa: BLE001 - fail open
            _report(impl.plugin_name, hook.name, on_plugin_error, call)
            continue
        if result is not None:
            return result
    return None


def _invoke(impl: Any, call: LLMCall, extra: dict[str, Any]) -> Any:
    available = {"call": call, **extra}
    return impl.function(**{name: available[name] for name in impl.argnames if name in available})


def _report(plugin: str, hook_name: str, on_plugin_error: Callable[[str], None], call: LLMCall) -> None:
    logger.warning("otel-margin: guardrail plugin %r failed in %s; the call proceeds", plugin, hook_name, exc_info=True)
    failed = call.attributes.setdefault(attr.MARGIN_GUARDRAIL_ERRORS, [])
    if plugin not in failed:
        failed.append(plugin)
    on_plugin_error(f"plugin:{plugin}")
