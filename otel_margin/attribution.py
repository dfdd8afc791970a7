"""Say what an LLM call is for: feature, customer, pricing tier, cohort (and revenue).

Three sources, in this order of precedence, resolved per key:

1. the explicit API, :func:`attribute`, as a context manager or decorator (sync and async,
   nestable; the innermost value of each key wins);
2. W3C baggage entries ``margin.feature``, ``margin.customer``, ``margin.tier`` and
   ``margin.cohort``, so an upstream service can set them for everything downstream;
3. the HTTP route of the enclosing server span, mapped to a feature by the policy file's
   ``[attribution.routes]`` table.

A call with no feature is recorded as ``unattributed``; it is never dropped.

Values are checked against what the ``llm_calls`` columns and the metric labels can hold. The
explicit API raises ``ValueError`` for a value it cannot store (a revenue that is not a finite
amount or that ``Decimal(38, 12)`` cannot hold, a key longer than :data:`MAX_TEXT_LENGTH`), at
the line that passed it. Values from outside — baggage from an upstream caller, a feature the
route mapping gives — never raise: one that is not usable text (not a string, empty, longer
than :data:`MAX_TEXT_LENGTH`) is refused (:mod:`otel_margin.refusals`: logged once per key,
counted in ``margin.refused``) and the key falls back to the next source, so nothing is stored
as an empty or cut value by accident. Control characters are kept as they are: the store keeps
names byte for byte, and human-facing output shows them escaped.
"""

from __future__ import annotations

import contextvars
import fnmatch
import functools
import inspect
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Any, Callable, Mapping, TypeVar

from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind

from otel_margin import attributes as attr
from otel_margin.call import Attribution
from otel_margin.refusals import refuse

F = TypeVar("F", bound=Callable[..., Any])

_explicit: contextvars.ContextVar[Attribution | None] = contextvars.ContextVar(
    "otel_margin_attribution", default=None
)
_server_span: contextvars.ContextVar[ReadableSpan | None] = contextvars.ContextVar(
    "otel_margin_server_span", default=None
)
_HTTP_ROUTE = "http.route"

MAX_TEXT_LENGTH = 256
"""Characters in a feature, customer, tier or cohort, at most. They are identifiers: the feature and
tier are labels of the ``margin.cost`` metric and every one is a column of every row and rollup
key, so a value of kilobytes (baggage allows 4 KiB an entry) costs on every call it rides on."""

MAX_REVENUE_USD = Decimal(10) ** 26
"""Revenue per call below this in magnitude: ``revenue_usd`` is ``Decimal(38, 12)``, 26 digits before
the point (more decimals than 12 are stored rounded half-even)."""

_STORED = functools.partial(
    Decimal.quantize, exp=Decimal("1e-12"), context=Context(prec=60, rounding=ROUND_HALF_EVEN)
)
"""An amount as the column stores it (12 decimals, half-even), for the magnitude check."""


class attribute:  # noqa: N801 - reads as a verb at the call site: ``with attribute(feature=...)``
    """Attribute the LLM calls made inside this scope to a feature / customer / tier / cohort.

    Use it as a context manager (``with attribute(feature="summarize", customer="acme"):``)
    or as a decorator on a sync or async function. Scopes nest; the innermost value of each
    key wins and unset keys are inherited. ``revenue_usd`` is usage-priced revenue earned by
    each call in the scope (a decimal string, int or Decimal; floats are converted through
    ``str`` so ``0.1`` means exactly 0.1).
    """

    def __init__(
        self,
        *,
        feature: str | None = None,
        customer: str | None = None,
        tier: str | None = None,
        cohort: str | None = None,
        revenue_usd: Decimal | str | int | float | None = None,
    ) -> None:
        for name, value in (("feature", feature), ("customer", customer), ("tier", tier), ("cohort", cohort)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"attribute({name}=...) takes a string, got {type(value).__name__} {value!r}")
            if value is not None and len(value) > MAX_TEXT_LENGTH:
                raise ValueError(
                    f"attribute({name}={value[:40]!r}...): {len(value)} characters, more than the "
                    f"{MAX_TEXT_LENGTH} a {name} may have; pass an identifier (an id or a short name)"
                )
        self._attribution = Attribution(
            feature=feature,
            customer=customer,
            tier=tier,
            cohort=cohort,
            revenue_usd=_as_money("revenue_usd", revenue_usd),
            source="api",
        )
        self._tokens: list[contextvars.Token[Attribution | None]] = []

    def __enter__(self) -> "attribute":
        outer = _explicit.get()
        merged = self._attribution if outer is None else self._attribution.merged_over(outer)
        self._tokens.append(_explicit.set(merged))
        return self

    def __exit__(self, *exc_info: object) -> None:
        _explicit.reset(self._tokens.pop())

    async def __aenter__(self) -> "attribute":
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__()

    def __call__(self, function: F) -> F:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_attributed(*args: Any, **kwargs: Any) -> Any:
                with self._fresh():
                    return await function(*args, **kwargs)

            return async_attributed  # type: ignore[return-value]

        @functools.wraps(function)
        def attributed(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return function(*args, **kwargs)

        return attributed  # type: ignore[return-value]

    def _fresh(self) -> "attribute":
        # A decorated function may run concurrently in threads and tasks; each run gets its
        # own token stack.
        fresh = attribute.__new__(attribute)
        fresh._attribution = self._attribution
        fresh._tokens = []
        return fresh


_NOT_SAID = Attribution()  # frozen: one instance serves every call that says nothing
_NO_BAGGAGE_KEYS = Attribution(source="baggage")


def current_attribution(routes: Mapping[str, str] | None = None) -> Attribution:
    """The attribution of a call made now: explicit API over baggage over route mapping."""
    explicit = _explicit.get()
    resolved = explicit if explicit is not None else _NOT_SAID
    entries = baggage.get_all()
    if entries:
        from_baggage = Attribution(
            feature=_from_outside("baggage", attr.BAGGAGE_FEATURE, entries.get(attr.BAGGAGE_FEATURE)),
            customer=_from_outside("baggage", attr.BAGGAGE_CUSTOMER, entries.get(attr.BAGGAGE_CUSTOMER)),
            tier=_from_outside("baggage", attr.BAGGAGE_TIER, entries.get(attr.BAGGAGE_TIER)),
            cohort=_from_outside("baggage", attr.BAGGAGE_COHORT, entries.get(attr.BAGGAGE_COHORT)),
            source="baggage",
        )
        if from_baggage != _NO_BAGGAGE_KEYS:  # other entries (a unit of work's) say nothing of attribution
            resolved = resolved.merged_over(from_baggage)
    if resolved.feature is None and routes:
        feature = _from_outside("route", attr.MARGIN_FEATURE, feature_for_route(current_route(), routes))
        if feature is not None:
            resolved = resolved.merged_over(Attribution(feature=feature, source="route"))
    return resolved


def feature_for_route(route: str | None, routes: Mapping[str, str]) -> str | None:
    """The feature a route maps to: exact match first, then glob patterns in file order."""
    if not route:
        return None
    exact = routes.get(route)
    if exact is not None:
        return exact
    for pattern, feature in routes.items():
        if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(route, pattern):
            return feature
    return None


def current_route() -> str | None:
    """``http.route`` of the enclosing server span, read now (frameworks often set it late)."""
    for span in (trace.get_current_span(), _server_span.get()):
        attributes = getattr(span, "attributes", None)
        if attributes:
            route = attributes.get(_HTTP_ROUTE)
            if isinstance(route, str):
                return route
    return None


class ServerRouteTracker(SpanProcessor):
    """Remembers the server span a request runs under, so calls deeper in the request can read its route.

    Only the current span is reachable from an LLM call; the server span may be several
    levels up. This processor, added to the SDK tracer provider at instrument time, keeps a
    reference to the innermost SERVER span in a context variable of the request's context.
    """

    def on_start(self, span: Any, parent_context: context.Context | None = None) -> None:
        if getattr(span, "kind", None) is SpanKind.SERVER:
            _server_span.set(span)

    def on_end(self, span: ReadableSpan) -> None:
        # on_end receives a read-only snapshot, not the span object on_start saw.
        tracked = _server_span.get()
        if tracked is not None and span.context is not None and tracked.context == span.context:
            _server_span.set(None)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _from_outside(source: str, key: str, value: object) -> str | None:
    """``value`` when it is usable text; else refused (logged once per source, key and kind, counted) and ``None``."""
    if value is None or (type(value) is str and 0 < len(value) <= MAX_TEXT_LENGTH):
        return value  # type: ignore[return-value]
    if not isinstance(value, str):
        kind, problem = "type", f"is a {type(value).__name__}, not a string"
    elif not value:
        kind, problem = "empty", "is empty"
    elif len(value) > MAX_TEXT_LENGTH:
        kind, problem = "length", f"has {len(value)} characters, more than {MAX_TEXT_LENGTH}"
    else:
        return value  # a str subclass within bounds
    what = f"the W3C baggage entry {key}" if source == "baggage" else "the feature the policy's route mapping gives"
    refuse(
        f"{source}:{key}", ("attribution", source, key, kind),
        "otel-margin: %s %s; calls are recorded without it (the next source, else unattributed) and each is "
        "counted in %s. Fix what sets it: non-empty text of at most %d characters.",
        what, problem, attr.METRIC_REFUSED, MAX_TEXT_LENGTH,
    )
    return None


def _as_money(name: str, value: Decimal | str | int | float | None) -> Decimal | None:
    if value is None:
        return None
    try:
        # An int as it is: str() of one beyond 4,300 digits raises CPython's own ValueError.
        amount = Decimal(value) if type(value) is int else Decimal(str(value))
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or isinstance(value, bool):
        raise ValueError(f"attribute({name}={value!r}): not a decimal amount; use e.g. '0.02'")
    # copy_abs, not abs(): abs() rounds to the context's 28 digits, and the column holds 38.
    if amount.copy_abs() >= MAX_REVENUE_USD or _STORED(amount).copy_abs() >= MAX_REVENUE_USD:
        raise ValueError(
            f"attribute({name}={_brief(value)}): beyond what the revenue_usd column (Decimal(38, 12)) holds, under "
            f"10^26 in magnitude (26 digits before the decimal point); pass dollars per call, e.g. '0.02'"
        )
    return amount


def _brief(value: object) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int beyond CPython's 4,300-digit limit for str()
        return f"<an int of {value.bit_length()} bits>"  # type: ignore[attr-defined]
    return text if len(text) <= 40 else f"{text[:37]}..."
