"""Turn a finished call record into a span and metrics (GenAI semantic conventions + margin.*).

One LLM span per call. When another GenAI instrumentation (the official OpenTelemetry
one, OpenLLMetry, OpenLIT) already opened the LLM span around ours, we write our
attributes onto that span instead of opening a second one ("enrich"); when ours is the
outer one, the others are skipped (see :mod:`otel_margin.pipeline`). Either way a call
yields exactly one LLM span, and it carries our attributes.
"""

from __future__ import annotations

import copy
import sys
import threading
import time
from decimal import Decimal
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from otel_margin import __version__
from otel_margin import attributes as attr
from otel_margin.call import LLMCall
from otel_margin.refusals import observe as observe_refusals
from otel_margin.usage_bounds import is_refused

SCOPE = "otel_margin"
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"
_PEER_LLM_KEYS = (attr.GEN_AI_OPERATION_NAME, "gen_ai.system", "llm.request.type")

PEER_WRAPPER_MODULES = (
    "opentelemetry.instrumentation.openai",
    "opentelemetry.instrumentation.anthropic",
    "openlit.",
)
"""Modules of peers' LLM instrumentations, whose wrappers may run outside or inside ours."""


class Telemetry:
    """The tracer and instruments of one instrumentor, created once at instrument time."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self.tracer = trace.get_tracer(SCOPE, __version__, tracer_provider, schema_url=_SCHEMA_URL)
        self._late: LateStart | None = None
        meter = metrics.get_meter(SCOPE, __version__, meter_provider, schema_url=_SCHEMA_URL)
        self.token_usage = meter.create_histogram(
            attr.METRIC_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=attr.TOKEN_USAGE_BUCKETS,
        )
        self.duration = meter.create_histogram(
            attr.METRIC_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=attr.DURATION_BUCKETS,
        )
        self.cost = meter.create_counter(
            attr.METRIC_COST,
            unit="USD",
            description="Cost of goods of LLM calls (exact per-call values are on spans).",
        )
        self.cache_requests = meter.create_counter(
            attr.METRIC_CACHE_REQUESTS,
            unit="{request}",
            description="Calls a response cache looked at, by feature and result (exact, semantic, miss, off).",
        )
        self.saved = meter.create_counter(
            attr.METRIC_SAVED,
            unit="USD",
            description="Cost of goods a guardrail avoided (cache hits, routing), by feature.",
        )
        self.cache_cost = meter.create_counter(
            attr.METRIC_CACHE_COST,
            unit="USD",
            description="Cost of goods the cache itself spent on lookups (embeddings), by feature.",
        )
        self.internal_errors = meter.create_counter(
            attr.METRIC_INTERNAL_ERRORS,
            unit="{error}",
            description="otel-margin's own failures, swallowed so the user's call could proceed.",
        )
        meter.create_observable_counter(
            attr.METRIC_REFUSED,
            callbacks=[observe_refusals],
            unit="{value}",
            description="Values from outside (usage, baggage, route mapping) refused: logged once, counted, dropped.",
        )

    def start_span(self, call: LLMCall) -> tuple[Any, bool]:
        """Open the call's span; return ``(span, owned)``; ``owned`` is False when enriching a peer's span.

        On the SDK's tracer the span is only planned now (a :class:`PlannedSpan`) and
        created by :meth:`finish`, off the caller's thread.
        """
        context = otel_context.get_current()
        current = trace.get_current_span(context)
        if current.is_recording() and _is_peer_llm_span(current):
            return current, False
        outer = _outer_peer_span()
        if outer is not None:
            return outer, False
        name = f"{call.operation} {call.request_model}"
        attributes = sampling_attributes(call)
        late = self._late_start()
        if late is not None:
            return late.plan(name, attributes, context), True
        return self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes), True

    def finish(
        self, call: LLMCall, span: Any, owned: bool, error: BaseException | None = None, end_ns: int | None = None
    ) -> None:
        """Write the call's attributes onto ``span``, end it (at ``end_ns``) if we own it, record metrics."""
        if type(span) is PlannedSpan:
            span = self._late.start(span)  # type: ignore[union-attr]
        values = span_attributes(call)
        if owned:
            # What samplers may read went onto the span at start; only the rest is written.
            for key in _SAMPLING_KEYS:
                values.pop(key, None)
            if call.model != call.request_model:
                span.update_name(f"{call.operation} {call.model}")
                values[attr.GEN_AI_REQUEST_MODEL] = call.model
        span.set_attributes(values)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
            if owned:
                span.record_exception(error)
        if owned:
            span.end(end_ns)
        self._record_metrics(call)

    def _late_start(self) -> "LateStart | None":
        late = self._late
        if late is None:
            # A ProxyTracer finds its real tracer once a provider is set: look again until then.
            tracer = getattr(self.tracer, "_real_tracer", None) or self.tracer
            late = LateStart.of(tracer)
            if late is not None:
                self._late = late
        return late

    def count_internal_error(self, where: str) -> None:
        """Count one of our own failures (never raises)."""
        try:
            self.internal_errors.add(1, {"margin.where": where})
        except Exception:  # noqa: BLE001 - counting must not fail the call either
            pass

    def _record_metrics(self, call: LLMCall) -> None:
        labels = {
            attr.GEN_AI_OPERATION_NAME: call.operation,
            attr.GEN_AI_PROVIDER_NAME: call.provider,
            attr.GEN_AI_REQUEST_MODEL: call.model,
        }
        if call.response_model:
            labels[attr.GEN_AI_RESPONSE_MODEL] = call.response_model
        if call.server_address is not None:
            labels[attr.SERVER_ADDRESS] = call.server_address
            if call.server_port is not None:
                labels[attr.SERVER_PORT] = call.server_port
        if call.error_type:
            labels[attr.ERROR_TYPE] = call.error_type
        if call.duration_s is not None:
            self.duration.record(call.duration_s, labels)
        usage = call.usage
        if usage is not None and call.error_type is None and not is_refused(call):
            self.token_usage.record(usage.input_tokens, {**labels, attr.GEN_AI_TOKEN_TYPE: "input"})
            if call.operation != "embeddings":
                self.token_usage.record(usage.output_tokens, {**labels, attr.GEN_AI_TOKEN_TYPE: "output"})
        cost = call.cost
        if cost is not None and cost.total is not None:
            self.cost.add(
                float(cost.total),
                {
                    attr.MARGIN_FEATURE: call.attribution.feature or attr.UNATTRIBUTED,
                    attr.MARGIN_TIER: call.attribution.tier or "",
                    attr.GEN_AI_REQUEST_MODEL: call.model,
                    attr.MARGIN_COST_STATUS: cost.status,
                },
            )
        result = call.attributes.get(attr.MARGIN_CACHE_RESULT)
        feature = {attr.MARGIN_FEATURE: call.attribution.feature or attr.UNATTRIBUTED}
        if result:
            self.cache_requests.add(1, {**feature, attr.MARGIN_CACHE_RESULT: result})
        saved = call.attributes.get(attr.MARGIN_SAVED_USD)
        if saved:
            by = "cache" if result in ("exact", "semantic", "hit") else "route"
            self.saved.add(float(saved), {**feature, attr.MARGIN_SAVED_BY: by})
        cache_cost = call.attributes.get(attr.MARGIN_CACHE_COST_USD)
        if cache_cost:
            self.cache_cost.add(float(cache_cost), feature)


class PlannedSpan(trace.NonRecordingSpan):
    """A call's span before it exists: it is created after the call (:class:`LateStart`).

    It is the current span during the provider call. Its ids and sampling decision are made
    the first time something reads its context — a propagator writing ``traceparent`` or an
    HTTP client's span during the call, else the finisher when it creates the span — so
    whatever the call did points at the span created later.
    """

    def __init__(self, late: "LateStart", name: str, attributes: dict[str, Any], parent: Any) -> None:
        self._context = None  # type: ignore[assignment]
        self.late = late
        self.name = name
        self.attributes = attributes
        self.parent = parent
        self.sampling: Any = None
        self.start_ns = time.time_ns()

    def get_span_context(self) -> SpanContext:
        context = self._context
        if context is None:
            context = self._context = self.late.decide(self)
        return context


class LateStart:
    """Create spans of the SDK's tracer after their call, as if started at its start.

    Starting a span costs the caller tens of microseconds in place (its sampler, ids,
    processors, limits, attribute copies). On the caller's thread a call gets a
    :class:`PlannedSpan`; :meth:`decide` makes its ids and sampling decision (the sampler
    runs once, with the call's parent context) when first needed; :meth:`start`, on the
    finisher, creates the span through the SDK's own ``start_span`` on a copy of the tracer
    whose sampler and id generator replay that decision, so processors' ``on_start`` get
    the call's parent context and the span its start time.
    """

    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer
        self._replay = _Replay()
        self._tracer = copy.copy(tracer)
        self._tracer.sampler = self._replay
        self._tracer.id_generator = self._replay
        # Reentrant: a span processor's on_start could make an instrumented call of its own
        # that is finished inline on this thread; by then the outer plan has been read.
        self._lock = threading.RLock()

    @classmethod
    def of(cls, tracer: Any) -> "LateStart | None":
        """For the SDK's tracer; ``None`` for any other (its spans start in place)."""
        try:
            from opentelemetry.sdk.trace import Tracer
        except ImportError:
            return None
        if type(tracer) is not Tracer:
            return None
        return cls(tracer)

    def plan(self, name: str, attributes: dict[str, Any], context: Any) -> PlannedSpan:
        """The span a call starting now in ``context`` will have."""
        return PlannedSpan(self, name, attributes, context)

    def decide(self, planned: PlannedSpan) -> SpanContext:
        """``planned``'s span context: its ids and sampling decision, as ``start_span`` makes them."""
        tracer = self.tracer
        parent = trace.get_current_span(planned.parent).get_span_context()
        enabled = getattr(tracer, "_is_enabled", None)
        if enabled is not None and not enabled():
            return parent  # a disabled tracer's spans are the parent's context, unrecorded
        ids = tracer.id_generator
        if parent.is_valid:
            trace_id = parent.trace_id
            random = getattr(parent.trace_flags, "random_trace_id", False)
        else:
            trace_id = ids.generate_trace_id()
            random = getattr(ids, "is_trace_id_random", bool)()
        sampling = tracer.sampler.should_sample(
            planned.parent, trace_id, planned.name, SpanKind.CLIENT, planned.attributes, ()
        )
        flags = TraceFlags.SAMPLED if sampling.decision.is_sampled() else TraceFlags.DEFAULT
        if random:
            flags |= _RANDOM_TRACE_ID
        planned.sampling = sampling
        return SpanContext(
            trace_id, ids.generate_span_id(), is_remote=False, trace_flags=TraceFlags(flags),
            trace_state=sampling.trace_state,
        )

    def start(self, planned: PlannedSpan) -> Any:
        """The SDK span ``planned`` describes, started at its start time."""
        context = planned.get_span_context()
        if planned.sampling is None:
            return trace.NonRecordingSpan(context)  # the tracer is disabled
        with self._lock:
            self._replay.planned = planned
            try:
                return self._tracer.start_span(
                    planned.name, context=planned.parent, kind=SpanKind.CLIENT,
                    attributes=planned.attributes, start_time=planned.start_ns,
                )
            finally:
                self._replay.planned = None


_RANDOM_TRACE_ID = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)


class _Replay:
    """Sampler and id generator of :class:`LateStart`'s tracer: they answer with the plan."""

    def __init__(self) -> None:
        self.planned: PlannedSpan | None = None

    def should_sample(self, *args: Any, **kwargs: Any) -> Any:
        return self.planned.sampling  # type: ignore[union-attr]

    def get_description(self) -> str:
        return "otel-margin replay of a sampling decision"

    def generate_trace_id(self) -> int:
        return self.planned.get_span_context().trace_id  # type: ignore[union-attr]

    def generate_span_id(self) -> int:
        return self.planned.get_span_context().span_id  # type: ignore[union-attr]

    def is_trace_id_random(self) -> bool:
        return self.planned.get_span_context().trace_flags & _RANDOM_TRACE_ID != 0  # type: ignore[union-attr]


def span_attributes(call: LLMCall) -> dict[str, Any]:
    """All attributes of a finished call, GenAI semconv names plus ``margin.*``."""
    values = request_attributes(call)
    values.update(result_attributes(call))
    return values


def sampling_attributes(call: LLMCall) -> dict[str, Any]:
    """The attributes a span starts with: those the GenAI conventions let samplers read."""
    values = {
        attr.GEN_AI_OPERATION_NAME: call.operation,
        attr.GEN_AI_PROVIDER_NAME: call.provider,
        attr.GEN_AI_REQUEST_MODEL: call.model,
    }
    if call.server_address is not None:
        values[attr.SERVER_ADDRESS] = call.server_address
        if call.server_port is not None:
            values[attr.SERVER_PORT] = call.server_port
    return values


_SAMPLING_KEYS = (
    attr.GEN_AI_OPERATION_NAME, attr.GEN_AI_PROVIDER_NAME, attr.GEN_AI_REQUEST_MODEL, attr.SERVER_ADDRESS,
    attr.SERVER_PORT,
)


def request_attributes(call: LLMCall) -> dict[str, Any]:
    """The attributes known before the provider is called: the request and its attribution."""
    attribution = call.attribution
    values: dict[str, Any] = {
        **sampling_attributes(call),
        attr.GEN_AI_REQUEST_STREAM: call.stream,
        attr.MARGIN_FEATURE: attribution.feature or attr.UNATTRIBUTED,
        attr.MARGIN_ATTRIBUTION_SOURCE: attribution.source,
    }
    if attribution.customer is not None:
        values[attr.MARGIN_CUSTOMER] = attribution.customer
    if attribution.tier is not None:
        values[attr.MARGIN_TIER] = attribution.tier
    if attribution.cohort is not None:
        values[attr.MARGIN_COHORT] = attribution.cohort
    if attribution.revenue_usd is not None:
        values[attr.MARGIN_REVENUE_USD] = money(attribution.revenue_usd)
    return values


def result_attributes(call: LLMCall) -> dict[str, Any]:
    """The attributes the response, the price catalog and the guardrails decide."""
    values: dict[str, Any] = {}
    if call.response_model:
        values[attr.GEN_AI_RESPONSE_MODEL] = call.response_model
    if call.response_id:
        values[attr.GEN_AI_RESPONSE_ID] = call.response_id
    if call.finish_reasons:
        values[attr.GEN_AI_RESPONSE_FINISH_REASONS] = list(call.finish_reasons)
    if call.error_type:
        values[attr.ERROR_TYPE] = call.error_type
    usage = call.usage
    if usage is not None:
        values[attr.MARGIN_USAGE_SOURCE] = usage.source
    if usage is not None and not is_refused(call):  # refused counts stay off (no int64, no UInt64 holds them)
        values[attr.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
        if call.operation != "embeddings":
            values[attr.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
        if usage.cache_read_tokens:
            values[attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cache_read_tokens
        if usage.cache_write_tokens:
            values[attr.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = usage.cache_write_tokens
        if usage.reasoning_tokens:
            values[attr.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_tokens
    cost = call.cost
    if cost is not None:
        values[attr.MARGIN_COST_STATUS] = cost.status
        if cost.price_version:
            values[attr.MARGIN_PRICE_VERSION] = cost.price_version
        if cost.total is not None:
            values[attr.MARGIN_COST_USD] = money(cost.total)
            values[attr.MARGIN_COST_INPUT_USD] = money(cost.input)
            values[attr.MARGIN_COST_OUTPUT_USD] = money(cost.output)
            # Absent means zero (the exporter and the collector view read it so).
            if cost.cache_read:
                values[attr.MARGIN_COST_CACHE_READ_USD] = money(cost.cache_read)
            if cost.cache_write:
                values[attr.MARGIN_COST_CACHE_WRITE_USD] = money(cost.cache_write)
            if cost.other:
                values[attr.MARGIN_COST_OTHER_USD] = money(cost.other)
            values[attr.MARGIN_PRICE_SOURCE] = cost.price_source
            values[attr.MARGIN_PRICE_MODEL] = cost.priced_as
    for key, value in call.attributes.items():
        values[key] = list(value) if isinstance(value, list) else value
    return values


def money(amount: Decimal) -> str:
    """A Decimal as a plain decimal string (``0.00000002``, never ``2E-8``): exact, parseable anywhere."""
    return format(amount, "f")


def _outer_peer_span() -> Any:
    """The LLM span of a peer's wrapper that called ours without making its span current.

    OpenLLMetry's anthropic wrapper starts its span, keeps it in a local ``span`` and calls
    the method it wraps (ours, when it was instrumented after us) with its span not current:
    enriching it is the only way to one LLM span per call. Only the first frame outside
    otel-margin (and wrapt) is looked at: a few reads when no peer is there.
    """
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "").startswith(("otel_margin.", "wrapt.")):
        frame = frame.f_back
    if frame is None or not frame.f_globals.get("__name__", "").startswith(PEER_WRAPPER_MODULES):
        return None
    span = frame.f_locals.get("span")
    if span is not None and getattr(span, "is_recording", bool)() and _is_peer_llm_span(span):
        return span
    return None


def _is_peer_llm_span(span: Any) -> bool:
    scope = getattr(span, "instrumentation_scope", None)
    if scope is not None and scope.name == SCOPE:
        return False
    attributes = getattr(span, "attributes", None) or {}
    return any(key in attributes for key in _PEER_LLM_KEYS)
