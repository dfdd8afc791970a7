"""Hook specifications for guardrail plugins.

Every guardrail, built-in or third-party, implements some of these hooks and is found
through the ``otel_margin`` entry-point group (see :mod:`otel_margin.pluginhost`). Hooks are
always called with keyword arguments, so a hook may gain an argument without breaking
plugins; an implementation may accept any subset of the arguments.

A call goes through the hooks in this order: :func:`margin_configure` (once, at load),
then per call :func:`margin_cache_lookup` → :func:`margin_limit_check` →
:func:`margin_route` → the provider call (none on a hit or a block) → :func:`margin_record`.
The cache looks first so that limits know whether the call will cost anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from otel_margin.call import LLMCall
    from otel_margin.guardrails import CacheHit, LimitDecision
    from otel_margin.policy import Policy
    from otel_margin.replay import Exchange

PROJECT = "otel_margin"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def margin_configure(policy: Policy) -> None:
    """Configure the plugin from the policy file, once, when plugins are loaded.

    :param policy: the validated policy file (an empty policy when there is none).

    All implementations are called. An implementation that raises is logged and its
    plugin is unregistered, so a broken plugin cannot fail every later call.
    """


@hookspec
def margin_limit_check(call: LLMCall) -> LimitDecision | None:
    """Decide whether ``call`` may proceed: budgets, rate limits, output-token caps.

    :param call: the call record; ``call.estimated_input_tokens`` holds the pre-call
        estimate and ``call.params`` the request as it will be sent;
        ``call.estimated_cost()`` prices it before it runs (exact dollars, ``None`` if unpriced).
        ``call.notes["cache.hit"]`` is ``True`` when a cache will answer the call at no cost:
        a spend budget should let it through; a request-rate limit may still count or block it.
    :return: ``None`` to allow, or a :class:`~otel_margin.guardrails.LimitDecision`:
        ``action="cap"`` lowers the request's output-token limit to ``max_output_tokens``
        (ignored for a cache hit, whose answer exists already);
        ``action="block"`` stops the call with :class:`~otel_margin.guardrails.MarginLimitExceeded`.
        The deciding limit's name, ``current_spend_usd`` and ``limit_usd``, and an applied cap,
        go on the span (``margin.limit.*``).

    All implementations are called and all decisions are collected; the strictest wins
    (block over cap over allow; the lowest cap). An implementation that raises fails open:
    the error is logged and counted and the call proceeds, unless it raises
    :class:`~otel_margin.guardrails.MarginLimitExceeded` itself (a fail-closed budget), which
    reaches the caller.
    """


@hookspec(firstresult=True)
def margin_cache_lookup(call: LLMCall) -> CacheHit | None:
    """Return a stored response for ``call`` instead of calling the provider.

    :param call: the call record. The full request (``call.params``) and the tenant
        (``call.customer``) must both be part of any cache key.
    :return: ``None`` on a miss, or a :class:`~otel_margin.guardrails.CacheHit` whose
        ``response`` is returned to the caller as is (it must be what the SDK would have
        returned: a response object, or for ``stream=True`` an iterable of chunks).

    First result wins. An implementation that raises fails open (logged, counted) and
    the lookup continues with the next plugin.
    """


@hookspec(firstresult=True)
def margin_route(call: LLMCall) -> str | None:
    """Pick a different model for ``call``: the cheapest that meets the feature's quality bar.

    :param call: the call record; ``call.model`` is the model asked for.
    :return: ``None`` to keep the model, or the name of the model to call instead. The
        original name is recorded as ``margin.route.from_model`` and the saving as
        ``margin.saved.usd`` (the actual usage priced at both models).

    First result wins. An implementation that raises fails open (logged, counted).
    """


@hookspec
def margin_record(call: LLMCall, response: Any, exchange: Exchange | None) -> None:
    """Observe a finished call: usage, cost, guardrail outcome, error (spend tracking, cache store).

    :param call: the completed call record: ``usage``, ``cost``, ``error_type`` and
        ``attributes`` are final; ``notes`` holds what the plugin's own earlier hooks left
        there for this call (e.g. a cache key made at lookup, from the request as first asked).
        For a stream, this runs when the stream ends. It also runs for a blocked call
        (``error_type = "MarginLimitExceeded"``, ``usage = None``, ``cost.status = "error"``
        with ``cost.total = None``: nothing was sent or billed) and for a cache hit.
    :param response: what the caller received (the SDK response object; for streams,
        the list of chunks seen; ``None`` after an error).
    :param exchange: the provider's HTTP response as it came over the wire (status, headers,
        body; for a stream, every event the caller was sent), when a ``margin_cache_lookup``
        implementation is registered and the response was read to its end; otherwise ``None``.
        Hand it back in :class:`~otel_margin.guardrails.CacheHit` to serve it again.

    All implementations are called. An implementation that raises is logged and counted;
    the other implementations still run.
    """
