"""The path of one LLM call: attribution → guardrails → provider → usage → cost → span.

Instrumentors describe each patched SDK method with an :class:`Endpoint` (how to read
its request and its response) and wrap it with :func:`sync_wrapper` / :func:`async_wrapper`.
Everything else — the call record, the guardrail hooks, pricing, the span, streams — is
here, once, for every provider.

The caller waits only for the span's start, the guardrails and the provider (and, for a
stream, reading its chunks when it ends); the rest of the call's telemetry is finished on
the finisher thread (:mod:`otel_margin.finisher`).

Safety rules kept here: the user's call never sees our errors (they are logged at debug
level and counted); the provider's errors reach the user unchanged; a blocked call raises
:class:`~otel_margin.guardrails.MarginLimitExceeded`; a stream's span ends exactly once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterator, Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace

from otel_margin import attributes as attr
from otel_margin import content, guardrails
from otel_margin.attribution import current_attribution
from otel_margin.units import unit_attributes
from otel_margin import guardrail_calls, outcomes, record_spans
from otel_margin.call import Attribution, Cost, LLMCall, Usage
from otel_margin.config_warnings import warn_once
from otel_margin.environment_variables import (
    OTEL_MARGIN_OPENAI_INCLUDE_USAGE,
)
from otel_margin.finisher import FINISHER
from otel_margin.pluginhost import pm
from otel_margin.guardrails import CACHE_HIT_NOTE
from otel_margin.replay import SLOT_KEY, Recording, Slot
from otel_margin.replay import install as install_replay
from otel_margin.request_hash import set_request_hash
from otel_margin.prices import get_catalog
from otel_margin.providers import Server, ServerTable
from otel_margin.streams import EventTap, tap_events, wrap_manager, wrap_raw_response, wrap_stream
from otel_margin.telemetry import PEER_WRAPPER_MODULES, Telemetry
from otel_margin.tokens import estimate_chat_input_tokens, estimate_output_tokens
from otel_margin.usage_bounds import load_bound, refuse_absurd

logger = logging.getLogger(__name__)

IN_CALL_KEY = otel_context.create_key("otel_margin.in_call")
"""Set in the OpenTelemetry context while an instrumented call runs: nested patched
methods (``with_raw_response`` → ``create``) pass straight through."""

# The context key of the current span (what trace.set_span_in_context sets), to build the
# call's context in one copy rather than three.
(_SPAN_KEY,) = trace.set_span_in_context(trace.INVALID_SPAN, otel_context.Context()).keys()

_READ_CHUNKS_EVERY = 256
"""Stream chunks noted before the observer reads them on the caller's thread (memory bound)."""

_READ_EVENTS_EVERY = 4096
"""Raw events of a tapped stream noted before they are read on the caller's thread (memory bound)."""

_KEEP_CHUNKS = 10_000
"""Chunks kept whole for ``margin_record`` hooks, at most."""


# OpenLLMetry's instrumentations skip a call when this context key is set.
_PEER_SUPPRESS_KEY = "suppress_language_model_instrumentation"


@dataclass(frozen=True, slots=True)
class Settings:
    """Configuration read once at instrument time."""

    telemetry: Telemetry
    routes: Mapping[str, str] = field(default_factory=dict)
    unit_prices: Mapping[str, Decimal] = field(default_factory=dict)
    include_usage: bool = True
    capture_content: bool = False
    """Message content goes on spans (:mod:`otel_margin.content`)."""
    capture_max_bytes: int = content.DEFAULT_MAX_BYTES
    """Cap of each content attribute, in UTF-8 bytes."""
    servers: ServerTable = field(default_factory=ServerTable)
    """Which provider and server an SDK client's calls go to (:mod:`otel_margin.providers`)."""
    enabled: threading.Event = field(default_factory=lambda: _set(threading.Event()))
    """Cleared at uninstrument: SDK objects keep bound methods (``with_raw_response`` holds
    ``create``), so a wrapper can outlive its patch and must then pass calls through."""

    @classmethod
    def load(cls, tracer_provider: Any = None, meter_provider: Any = None, policy: Any = None) -> "Settings":
        """Settings from the environment and the policy file; a broken policy is logged, not raised."""
        from otel_margin.pluginhost import load_plugins
        from otel_margin.policy import load_policy_or_empty

        if policy is None:
            policy = load_policy_or_empty()
        load_plugins(policy)
        load_bound()
        # Built here, not by the first call's finishing job: on the finisher thread, beside a
        # caller that keeps the interpreter busy, every system call of the build (imports,
        # file reads) waits up to the switch interval for the interpreter, and the first
        # calls' telemetry waited seconds for it (benchmarks/README.md, "A caller that never waits").
        try:
            get_catalog(policy)
        except Exception:  # noqa: BLE001 - calls still run; pricing each one retries it and counts the failure
            logger.exception("otel-margin: the price catalog could not be built; calls stay unpriced until it can")
        record_spans.use_tracer_provider(tracer_provider)  # outcomes and cost lines go where calls go
        outcomes.use_policy(policy)
        return cls(
            telemetry=Telemetry(tracer_provider, meter_provider),
            routes=dict(policy.routes),
            unit_prices={
                name: feature.unit_price_usd
                for name, feature in policy.features.items()
                if feature.unit_price_usd is not None
            },
            include_usage=_env_flag(OTEL_MARGIN_OPENAI_INCLUDE_USAGE, True),
            capture_content=content.capture_enabled(),
            capture_max_bytes=content.max_bytes(),
            servers=ServerTable(policy.host),
        )


class Endpoint:
    """How to read one SDK method's request and response. Subclassed per provider API.

    ``read_response`` and ``stream_observer`` must tolerate any shape (missing fields,
    ``None`` usage): the flow calls them inside a guard, but a clean ``None`` is better
    than an exception that costs a log line per call.
    """

    provider: str = ""
    operation: str = "chat"
    api: str = ""
    always_stream: bool = False
    """The method always streams (``messages.stream()``), whatever ``stream=`` says."""

    def prepare(self, call: LLMCall, settings: Settings) -> None:
        """Adjust the request before it is sent (e.g. ask for stream usage)."""

    def read_response(self, call: LLMCall, response: Any) -> None:
        """Fill usage, response model, id and finish reasons from a complete response."""

    def stream_observer(self, call: LLMCall) -> "StreamObserver":
        """An observer fed with every chunk of a stream."""
        return StreamObserver()

    def hidden_chunk(self, call: LLMCall) -> Callable[[Any], bool] | None:
        """A test for stream chunks to hide from the caller (OpenAI's injected usage chunk), or None.

        Runs on the caller's thread for every chunk: keep it to a couple of attribute reads,
        and it must never raise.
        """
        return None

    def tap_event(self, call: LLMCall) -> EventTap | None:
        """How to tap the stream's raw events (:class:`~otel_margin.streams.EventTap`), or None.

        A tapped stream's observer reads its events' original ``data`` text, and the values
        the tap took, instead of the parsed chunks: text costs the caller nothing to keep, so
        it is read on the finisher thread. The tap may also rewrite events before the SDK
        parses them (to undo what an injected option added) or take them (the SDK never
        parses them). When the stream cannot be tapped
        (:func:`~otel_margin.streams.tap_events`), the observer reads the parsed chunks and
        :meth:`hidden_chunk` hides what the tap would have taken.
        """
        return None

    def output_text(self, response: Any) -> str:
        """The generated text of a response, for estimating output tokens when usage is missing."""
        return ""

    def server(self, instance: Any, settings: Settings) -> Server | None:
        """Where the SDK resource ``instance``'s calls go; ``None``: :attr:`provider`, no address.

        Runs on the caller's thread for every call: look up a cached answer, and never raise.
        """
        return None


class StreamObserver:
    """Reads each chunk of a stream, in order; fills the call record when the stream ends.

    Chunks are read in batches after the caller saw them: where the stream ends, or for a
    tapped stream (:meth:`Endpoint.tap_event`) on the finisher thread. A tapped stream's
    "chunks" are its events' raw ``data`` text and the values the tap took.
    """

    def observe(self, call: LLMCall, chunk: Any) -> None:
        """Read ``chunk`` (a parsed chunk, or a tapped stream's event text or taken value)."""

    def read(self, call: LLMCall, chunks: list[Any]) -> None:
        """Read the next ``chunks``; an observer may skip what the call no longer needs."""
        for chunk in chunks:
            self.observe(call, chunk)

    def finish(self, call: LLMCall) -> None:
        """Fill the call record from what was seen."""

    def text(self) -> str:
        """Text generated so far, for estimating output tokens of a cut or abandoned stream."""
        return ""


def sync_wrapper(endpoint: Endpoint, settings: Settings) -> Callable[..., Any]:
    """A wrapt wrapper running a sync SDK method through the pipeline."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        if otel_context.get_value(IN_CALL_KEY) or not settings.enabled.is_set():
            return wrapped(*args, **kwargs)
        flow = CallFlow.begin(endpoint, settings, kwargs, instance)
        if flow is None:
            return wrapped(*args, **kwargs)
        if flow.cached is not None:
            return flow.cached
        token = flow.enter()
        try:
            result = _past_peers(wrapped)(*args, **flow.call.params)
        except BaseException as error:
            flow.fail(error)
            raise
        finally:
            otel_context.detach(token)
        return flow.succeed(result)

    return wrapper


def async_wrapper(endpoint: Endpoint, settings: Settings) -> Callable[..., Any]:
    """A wrapt wrapper running an async SDK method through the pipeline."""

    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        if otel_context.get_value(IN_CALL_KEY) or not settings.enabled.is_set():
            return await wrapped(*args, **kwargs)
        flow = CallFlow.begin(endpoint, settings, kwargs, instance)
        if flow is None:
            return await wrapped(*args, **kwargs)
        if flow.cached is not None:
            return flow.cached
        token = flow.enter()
        try:
            result = await _past_peers(wrapped)(*args, **flow.call.params)
        except BaseException as error:
            flow.fail(error)
            raise
        finally:
            otel_context.detach(token)
        return flow.succeed(result)

    return wrapper


def manager_wrapper(endpoint: Endpoint, settings: Settings) -> Callable[..., Any]:
    """A wrapt wrapper for methods returning a lazy stream manager; the request runs at ``__enter__``."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        if otel_context.get_value(IN_CALL_KEY) or not settings.enabled.is_set():
            return wrapped(*args, **kwargs)
        flow = CallFlow.begin(endpoint, settings, kwargs, instance)
        if flow is None:
            return wrapped(*args, **kwargs)
        if flow.cached is not None:
            return flow.cached
        try:
            manager = _past_peers(wrapped)(*args, **flow.call.params)
        except BaseException as error:
            flow.fail(error)
            raise
        return wrap_manager(manager, flow)

    return wrapper


def quiet_inside_calls(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
    """Wrapper for an SDK's own span factory: no second span inside one of our calls."""
    if otel_context.get_value(IN_CALL_KEY):
        return None
    return wrapped(*args, **kwargs)


class CallFlow:
    """One call in flight: its record, its span, and whether it has finished.

    The caller's thread does only what must happen during the call: open the span, run the
    guardrails, note the chunks of a stream and the end time. Reading usage, pricing, the
    record hooks, the span's attributes and end, and the metrics run on the finisher thread
    (:mod:`otel_margin.finisher`), so the caller does not wait for them. A stream's chunks are
    read where the stream ends, so that they do not outlive it (see ``_end``).
    """

    __slots__ = ("endpoint", "settings", "call", "span", "owned", "started", "cached", "done",
                 "pending", "observer", "chunks", "hide", "tapped", "slot")

    def __init__(self, endpoint: Endpoint, settings: Settings, call: LLMCall) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self.call = call
        self.span: Any = None
        self.owned = True
        self.started = time.perf_counter()
        self.cached: Any = None
        self.done = False
        self.pending: list[Any] = []
        """Stream chunks not yet read by the observer (read in batches, mostly off-thread)."""
        self.observer: StreamObserver | None = None
        self.chunks: list[Any] | None = None
        """Every chunk, kept only when a ``margin_record`` hook will read them."""
        self.hide: Callable[[Any], bool] | None = None
        self.tapped = False
        """The stream's raw events, not its chunks, go to ``pending`` (:meth:`Endpoint.tap_event`)."""
        self.slot: Slot | None = None
        """What the HTTP layer does for this call: serve a cached exchange, or record the provider's."""

    @classmethod
    def begin(cls, endpoint: Endpoint, settings: Settings, kwargs: dict, instance: Any = None) -> "CallFlow | None":
        """Build the record, open the span, run the guardrails. ``None``: run the call bare.

        Raises only :class:`~otel_margin.guardrails.MarginLimitExceeded` (a blocked call).
        """
        try:
            call = _new_call(endpoint, settings, kwargs, instance)
            span, owned = settings.telemetry.start_span(call)
        except Exception:  # noqa: BLE001 - our failure: the call proceeds uninstrumented
            _internal_error(settings, "begin")
            return None
        flow = cls(endpoint, settings, call)
        flow.span, flow.owned = span, owned
        try:
            endpoint.prepare(flow.call, settings)
            if flow.call.stream:
                flow.hide = endpoint.hidden_chunk(flow.call)
                flow.chunks = [] if "margin_record" in pm.hooks_in_use() else None
            hit = guardrails.before_call(flow.call, settings.telemetry.count_internal_error)
            if settings.capture_content:
                content.start(flow.call, settings.capture_max_bytes)  # what is sent, guardrails applied
        except guardrails.MarginLimitExceeded as blocked:
            flow.call.error_type = type(blocked).__name__
            flow._end(None, blocked)
            raise
        except Exception:  # noqa: BLE001
            _internal_error(settings, "guardrails")
            return flow
        if hit is not None and hit.exchange is not None:
            # The SDK builds its own answer from the stored response (otel_margin.replay).
            flow.slot = Slot(exchange=hit.exchange)
            install_replay()
        elif hit is not None:
            flow.call.usage = Usage(source="cache")
            flow._end(hit.response, None)
            flow.cached = hit.response
        elif "margin_cache_lookup" in pm.hooks_in_use():
            flow.slot = Slot(sink=Recording())  # for margin_record's exchange
            install_replay()
        return flow

    def enter(self) -> object:
        """Make our span current and peers quiet for the duration of the provider call."""
        values = {**otel_context.get_current(), IN_CALL_KEY: True, _PEER_SUPPRESS_KEY: True}
        if self.owned:
            values[_SPAN_KEY] = self.span
        if self.slot is not None:
            values[SLOT_KEY] = self.slot
        return otel_context.attach(otel_context.Context(values))

    def succeed(self, result: Any) -> Any:
        """Take a provider result; return it, or a proxy of it for streams. Never raises."""
        try:
            if _is_raw_response(result):
                return wrap_raw_response(result, self)
            if self.call.stream:
                # When the SDK reads its events some other way, chunks_of finds out at the first
                # chunk and falls back to noting the chunks and hiding with ``hide``.
                self.tapped = tap_events(result, self.endpoint.tap_event(self.call), self.pending)
                return wrap_stream(result, self)
            self._end(result, None, read=True)
        except Exception:  # noqa: BLE001
            _internal_error(self.settings, "response")
            self._end(result, None)
        return result

    def fail(self, error: BaseException) -> None:
        """Record a provider error (the caller gets it unchanged). Never raises."""
        try:
            self.call.error_type = _error_type(error)
            self._end(None, error)
        except Exception:  # noqa: BLE001
            _internal_error(self.settings, "fail")

    def observe(self, chunk: Any) -> bool:
        """Note one stream chunk; True means hide it from the caller. Never raises.

        Runs on the caller's thread once per chunk: it only keeps the chunk for later.
        """
        try:
            pending = self.pending
            if self.tapped and not pending:
                # No event passed the tap before this chunk: the SDK read its events some other
                # way. Note the chunks instead (``chunks_of`` checks this at the first chunk).
                self.tapped = False
            if not self.tapped:
                pending.append(chunk)
            if len(pending) >= (_READ_EVENTS_EVERY if self.tapped else _READ_CHUNKS_EVERY):
                self._read_pending()  # bound the memory of long streams
            if self.chunks is not None and len(self.chunks) < _KEEP_CHUNKS:
                self.chunks.append(chunk)
        except Exception:  # noqa: BLE001
            _internal_error(self.settings, "stream")
        hide = self.hide
        return hide is not None and hide(chunk)

    def chunks_of(self, stream: Iterator[Any]) -> Iterator[Any]:
        """``stream``'s chunks as the caller gets them, each noted first; the flow ends with it.

        :meth:`observe`, written out: this loop runs once per chunk on the caller's thread. A
        tapped stream's events are noted by the tap, which also took what ``hide`` would hide.
        """
        pending, kept = self.pending, self.chunks
        check = self.tapped  # confirm at the first chunk that the tap sees the events
        if check:
            note, hide, every = False, None, _READ_EVENTS_EVERY
        else:
            note, hide, every = True, self.hide, _READ_CHUNKS_EVERY
        try:
            for chunk in stream:
                if check:
                    check = False
                    if not pending:  # no event passed the tap: the SDK read them another way
                        self.tapped, note, hide, every = False, True, self.hide, _READ_CHUNKS_EVERY
                if note:
                    pending.append(chunk)
                if len(pending) >= every:
                    self._read_pending()  # bound the memory of long streams
                if kept is not None and len(kept) < _KEEP_CHUNKS:
                    kept.append(chunk)
                if hide is None or not hide(chunk):
                    yield chunk
        except GeneratorExit:
            raise  # the caller stopped iterating; close(), context exit or the flow's collection ends it
        except BaseException as error:
            self.end_stream(error)
            raise
        self.end_stream()

    def end_stream(self, error: BaseException | None = None) -> None:
        """The stream ended (exhausted, closed, abandoned or failed). Idempotent. Never raises."""
        if self.done:
            return
        try:
            if error is not None:
                self.call.error_type = _error_type(error)
            self._end(self.chunks, error, stream=True)
        except Exception:  # noqa: BLE001
            _internal_error(self.settings, "stream_end")
            self.done = True

    def __del__(self) -> None:
        # Nothing can feed the call any more: its stream, proxy and iterators are all gone.
        if not self.done:
            self.end_stream()

    def _end(self, response: Any, error: BaseException | None, *, read: bool = False, stream: bool = False) -> None:
        """The call is over: note when, and have it finished — off the caller's thread when we can."""
        if self.done:
            return
        self.done = True
        self.call.duration_s = time.perf_counter() - self.started
        end_ns = time.time_ns()
        if not self.owned:
            # A peer's span ends the moment we return: it must carry our attributes now.
            self._finish(response, error, read, stream, end_ns)
            return
        if stream:
            if self.tapped:
                # Raw event text is no work to keep: the finisher reads it. A copy: the tap
                # holds the list, and a stream read past its end would still append to it.
                self.pending = self.pending[:]
            else:
                # Chunks must not outlive their call (benchmarks/README.md, "Where the work
                # runs"): read them here; the finisher gets the record.
                self._read_pending()
        if "margin_record" in pm.hooks_in_use() or guardrail_calls.is_own(self.call):
            # A guardrail's own call is priced before it returns: the guardrail books its cost.
            # Record hooks (cache stores, spend) must have seen this call before the next one begins.
            self._account(response, error, read, stream)
            kept = response if self.settings.capture_content else None  # its content, for the span
            FINISHER.submit(lambda: self._emit(error, end_ns, kept))
        else:
            FINISHER.submit(lambda: self._finish(response, error, read, stream, end_ns))

    def _finish(self, response: Any, error: BaseException | None, read: bool, stream: bool, end_ns: int) -> None:
        self._account(response, error, read, stream)
        self._emit(error, end_ns, response)

    def _account(self, response: Any, error: BaseException | None, read: bool, stream: bool) -> None:
        """Usage, cost and revenue of the finished call; then the record hooks."""
        call = self.call
        settings = self.settings
        if read:
            try:
                self.endpoint.read_response(call, response)
            except Exception:  # noqa: BLE001 - usage falls back to an estimate
                _internal_error(settings, "response")
        try:
            if stream:
                self._read_pending()
                if self.observer is not None:
                    self.observer.finish(call)
                if call.usage is None:
                    self._estimate_usage(self.observer.text() if self.observer is not None else "")
            elif call.usage is None and error is None:
                self._estimate_usage(self.endpoint.output_text(response))
            if call.notes.get(CACHE_HIT_NOTE):
                call.usage = Usage(source="cache")  # nothing was billed: the replayed usage was the original's
            if call.usage is not None and call.cost is None:
                _price(call)
            if error is not None or call.error_type is not None:
                _book_failure(call)
            elif call.attribution.revenue_usd is None and call.attribution.feature in settings.unit_prices:
                _set_unit_revenue(call, settings.unit_prices[call.attribution.feature])
            sink = self.slot.sink if self.slot is not None else None
            exchange = sink.last if sink is not None else None
            guardrail_calls.settle(call)  # a guardrail's own call: its cost, to that guardrail
            guardrails.after_call(call, response, settings.telemetry.count_internal_error, exchange)
        except Exception:  # noqa: BLE001
            _internal_error(settings, "finish")
        try:
            set_request_hash(call)  # after the cache's hooks: its key, when it made one, is reused
        except Exception:  # noqa: BLE001 - the row goes without a fingerprint
            _internal_error(settings, "request_hash")

    def _emit(self, error: BaseException | None, end_ns: int, response: Any = None) -> None:
        """The span's attributes and end, and the metrics."""
        if self.settings.capture_content:
            try:
                self.call.attributes.update(content.span_attributes(self.call, response))
            except Exception:  # noqa: BLE001 - the span goes without content
                _internal_error(self.settings, "content")
        try:
            self.settings.telemetry.finish(self.call, self.span, self.owned, error, end_ns)
        except Exception:  # noqa: BLE001
            _internal_error(self.settings, "span")

    def _read_pending(self) -> None:
        if not self.pending:
            return
        pending = self.pending[:]
        self.pending.clear()  # the same list: chunks_of appends to it
        observer = self.observer
        if observer is None:
            observer = self.observer = self.endpoint.stream_observer(self.call)
        try:
            observer.read(self.call, pending)
        except Exception:  # noqa: BLE001 - the caller saw its chunks; usage falls back to an estimate
            _internal_error(self.settings, "stream")
        if self.settings.capture_content:
            try:
                content.feed(self.call, pending)
            except Exception:  # noqa: BLE001 - the span goes without the streamed output
                _internal_error(self.settings, "content")

    def _estimate_usage(self, output_text: str) -> None:
        call = self.call
        if call.estimated_input_tokens is None:
            call.estimated_input_tokens = estimate_chat_input_tokens(call.provider, call.params)
        output = estimate_output_tokens(output_text, call.model) if output_text else 0
        call.usage = Usage(input_tokens=call.estimated_input_tokens, output_tokens=output, source="estimated")


def _new_call(endpoint: Endpoint, settings: Settings, kwargs: dict, instance: Any = None) -> LLMCall:
    params = dict(kwargs)
    model = params.get("model")
    server = endpoint.server(instance, settings)
    call = LLMCall(
        provider=server.provider if server is not None else endpoint.provider,
        operation=endpoint.operation,
        request_model=model if isinstance(model, str) else "",
        params=params,
        attribution=current_attribution(settings.routes),
        api=endpoint.api,
        stream=endpoint.always_stream or params.get("stream") is True,
    )
    if server is not None:
        call.server_address, call.server_port = server.address, server.port
    call.attributes.update(unit_attributes())  # empty outside a unit: the row is its own unit
    guardrail_calls.mark(call)  # made by a guardrail for another call (the cache's embedding)
    if not pm.hooks_in_use().isdisjoint(("margin_limit_check", "margin_cache_lookup")):
        # Guardrails want a pre-call size; counting costs time, so only when someone reads it.
        call.estimated_input_tokens = estimate_chat_input_tokens(call.provider, params)
    return call


def _price(call: LLMCall) -> None:
    if refuse_absurd(call):  # usage no call can have: status invalid, never priced
        return
    catalog = get_catalog()
    model = call.response_model or call.model
    server = (call.server_address, call.server_port) if call.server_address is not None else None
    call.cost = catalog.price(call.provider, model, call.usage, duration_s=call.duration_s, server=server)
    from_model = call.attributes.get(attr.MARGIN_ROUTE_FROM_MODEL)
    if from_model and call.cost.total is not None and attr.MARGIN_SAVED_USD not in call.attributes:
        would_have = catalog.price(call.provider, from_model, call.usage, duration_s=call.duration_s, server=server)
        if would_have.total is not None:
            call.attributes[attr.MARGIN_SAVED_USD] = format(would_have.total - call.cost.total, "f")


def _book_failure(call: LLMCall) -> None:
    """A failed call (provider error, blocked, cut stream) earns no usage revenue; without usage it costs nothing.

    A provider bills a failed call only for the usage it reports (or that a cut stream
    produced, estimated): with none, the cost status is ``error``, not ``unpriced`` (its model
    may well have a price).
    """
    if call.usage is None and call.cost is None:
        call.cost = Cost(status="error")
    a = call.attribution
    if a.revenue_usd is not None:
        call.attribution = Attribution(a.feature, a.customer, a.tier, a.cohort, None, a.source)
    call.attributes.pop(attr.MARGIN_REVENUE_USD, None)


def _set_unit_revenue(call: LLMCall, unit_price: Decimal) -> None:
    a = call.attribution
    call.attribution = Attribution(a.feature, a.customer, a.tier, a.cohort, unit_price, a.source)
    # The span got the request's attribution at start; this revenue is decided only now.
    call.attributes[attr.MARGIN_REVENUE_USD] = format(unit_price, "f")


def _past_peers(wrapped: Any) -> Any:
    # wrapt's bound wrapper of a peer instrumentation: call what it wraps instead (ours is the
    # outer wrapper, so one call yields one LLM span).
    while type(wrapped).__name__ == "BoundFunctionWrapper":
        module = getattr(getattr(wrapped, "_self_wrapper", None), "__module__", "") or ""
        if not module.startswith(PEER_WRAPPER_MODULES):
            break
        wrapped = wrapped.__wrapped__
    return wrapped


def _is_raw_response(result: Any) -> bool:
    kind = type(result)
    raw = _RAW_RESPONSE_TYPES.get(kind)
    if raw is None:
        # Decided once per class: attribute probes on pydantic models raise and cost microseconds.
        raw = hasattr(result, "http_response") and hasattr(result, "parse") and not hasattr(result, "__next__")
        _RAW_RESPONSE_TYPES[kind] = raw
    return raw


_RAW_RESPONSE_TYPES: dict[type, bool] = {}


def _error_type(error: BaseException) -> str:
    return type(error).__qualname__


def _internal_error(settings: Settings, where: str) -> None:
    logger.debug("otel-margin: internal error in %s; the call proceeds", where, exc_info=True)
    settings.telemetry.count_internal_error(where)


def _set(event: threading.Event) -> threading.Event:
    event.set()
    return event


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    warn_once(logger, "otel-margin: %s=%r is not true/false; using %s", name, value, default)
    return default

