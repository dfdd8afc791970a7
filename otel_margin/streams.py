"""Proxies that let a call's span follow a stream without changing what the caller sees.

Each proxy is a ``wrapt.ObjectProxy``: ``isinstance(s, openai.Stream)`` stays true and
every attribute the caller uses reaches the real object. The span ends exactly once: on
exhaustion, ``break`` + ``close()``, context exit, garbage collection, or error. Garbage
collection is the flow's own (``CallFlow.__del__``), not the proxy's: in
``for chunk in client.chat.completions.create(stream=True)`` the proxy is gone before the
first chunk, and only the iterator it returned still feeds the call.
"""

from __future__ import annotations

import inspect
import types
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator

import wrapt
from opentelemetry import context as otel_context

if TYPE_CHECKING:
    from otel_margin.pipeline import CallFlow


def wrap_stream(stream: Any, flow: "CallFlow") -> Any:
    """The proxy for a provider stream (sync or async)."""
    kind = _STREAM_KINDS.get(type(stream))
    if kind is None:
        kind = _STREAM_KINDS[type(stream)] = _stream_kind(stream)
    if kind is not None:
        return kind(stream, flow)
    # Not a stream after all (a stand-in or a plugin returned a full object): read it whole.
    flow.call.stream = False
    return flow.succeed(stream)


def _stream_kind(stream: Any) -> type | None:
    if hasattr(stream, "__anext__") or hasattr(stream, "__aiter__"):
        return AsyncStreamProxy
    if hasattr(stream, "__next__") or hasattr(stream, "__iter__"):
        return StreamProxy
    return None


_STREAM_KINDS: dict[type, type | None] = {}
"""The proxy class for each type of result, decided once per type: probing costs the caller."""


@dataclass(frozen=True, slots=True)
class EventTap:
    """What to do with each server-sent event of a stream before the SDK parses it.

    An event whose ``data`` text ends with ``suffix`` gets that suffix swapped for
    ``replacement`` (to undo, for the caller, what an option we injected added to every
    event); any other event is offered to ``take``, which returns ``None`` to leave it, or a
    value to take the event instead: the SDK never parses it, and the value is noted in its
    place. ``take`` runs on the caller's thread and must never raise.
    """

    suffix: str = ""
    replacement: str = ""
    take: Callable[[str], Any] | None = None

    def __call__(self, data: str) -> Any:
        """``None`` (leave the event), the text to parse instead, or the taken value.

        The sync stream loop writes this out for speed; it is the one definition of both.
        """
        if self.suffix and data.endswith(self.suffix):
            return data[: -len(self.suffix)] + self.replacement
        return self.take(data) if self.take is not None else None


def tap_events(stream: Any, tap: EventTap | None, seen: list[Any]) -> bool:
    """Have ``tap`` act on each server-sent event of an SDK stream, and note every event.

    The SDK's stream (``openai``'s and ``anthropic``'s alike) pulls server-sent events from its
    ``_iter_events()`` when first iterated; an unstarted stream gets an instance-level
    replacement that applies ``tap`` to each event's ``data`` text. ``seen`` gets, in order,
    each event's original text, or the value ``tap`` took it for. False when ``tap`` is None
    or the stream is not of that shape or already started: then nothing was changed.
    """
    events = getattr(getattr(stream, "_iter_events", None), "__func__", None)
    if tap is None or events is None:
        return False
    # Only an unstarted generator: not closed (no frame), not running, not past its first
    # instruction (f_lasti is -1 or 0 before the first resume, by Python version).
    iterator = getattr(stream, "_iterator", None)
    if type(iterator) is types.GeneratorType:
        frame = iterator.gi_frame
        if frame is None or iterator.gi_running or frame.f_lasti > 0:
            return False
        stream._iter_events = _tapped(events, weakref.ref(stream), tap, seen.append)
    elif type(iterator) is types.AsyncGeneratorType:
        frame = iterator.ag_frame
        if frame is None or iterator.ag_running or frame.f_lasti > 0:
            return False
        stream._iter_events = _atapped(events, weakref.ref(stream), tap, seen.append)
    else:
        return False
    # The replacement lives on the stream, so it holds the stream weakly: a strong reference
    # back would make a cycle that keeps every stream, its response and its buffers alive
    # until the garbage collector runs.
    return True


def _tapped(events: Callable[[Any], Iterator[Any]], owner: Any, tap: EventTap,
            note: Callable[[Any], None]) -> Callable[[], Iterator[Any]]:
    suffix, replacement, take = tap.suffix, tap.replacement, tap.take
    cut = -len(suffix)

    def tapped() -> Iterator[Any]:
        # EventTap.__call__, written out: this loop runs once per event on the caller's thread.
        plain: type | None = None  # the SDK's event class, once seen to keep its text in ``_data``
        for event in events(owner()):
            if type(event) is plain:
                data = event._data
            else:
                data = getattr(event, "data", None)
                if type(data) is not str:
                    note(data)
                    yield event
                    continue
                if plain is None and getattr(event, "_data", None) is data:
                    plain = type(event)
            if suffix and data.endswith(suffix):
                note(data)
                rewritten = data[:cut] + replacement
                if type(event) is plain:
                    event._data = rewritten  # the SDK's own event, made for this one read
                    yield event
                else:
                    yield _with_data(event, rewritten)
                continue
            taken = take(data) if take is not None else None
            if taken is None:
                note(data)
                yield event
            else:
                note(taken)

    return tapped


def _atapped(events: Callable[[Any], AsyncIterator[Any]], owner: Any, tap: EventTap,
             note: Callable[[Any], None]) -> Callable[[], AsyncIterator[Any]]:
    async def atapped() -> AsyncIterator[Any]:
        async for event in events(owner()):
            data = getattr(event, "data", None)
            result = tap(data) if type(data) is str else None
            if result is None:
                note(data)
                yield event
            elif type(result) is str:
                note(data)
                yield _with_data(event, result)
            else:
                note(result)

    return atapped


def _with_data(event: Any, data: str) -> Any:
    """``event`` carrying ``data`` instead (the SDKs' events keep it in ``_data``), else a copy."""
    try:
        event._data = data  # the event is the SDK's own, made for this one read: nobody else holds it
        if event.data is data:
            return event
        return type(event)(event=event.event, data=data, id=event.id, retry=event.retry)
    except Exception:  # noqa: BLE001 - an event class of another shape: the SDK gets it unchanged
        return event


def wrap_manager(manager: Any, flow: "CallFlow") -> Any:
    """The proxy for a lazy stream manager (``anthropic ... messages.stream()``)."""
    if hasattr(manager, "__aenter__"):
        return AsyncStreamManagerProxy(manager, flow)
    return StreamManagerProxy(manager, flow)


def wrap_raw_response(response: Any, flow: "CallFlow") -> Any:
    """The proxy for ``with_raw_response`` / ``with_streaming_response`` results."""
    if inspect.iscoroutinefunction(getattr(response, "parse", None)):
        return AsyncRawResponseProxy(response, flow)
    proxy = RawResponseProxy(response, flow)
    if not flow.call.stream and not hasattr(response, "iter_bytes"):
        # The legacy raw response has its body read already; parsing it is pure and cached,
        # so we can read usage now rather than wait for a parse() that may never come.
        proxy.parse()
    return proxy


class StreamProxy(wrapt.ObjectProxy):
    """A sync provider stream that feeds each chunk to the call flow.

    Iterating it gives a generator (:meth:`CallFlow.chunks_of`), as iterating the SDK's own
    streams does.
    """

    def __init__(self, stream: Any, flow: "CallFlow") -> None:
        super().__init__(stream)
        self._self_flow = flow
        self._self_chunks = flow.chunks_of(iter(stream))

    def __iter__(self) -> Any:
        return self._self_chunks

    def __next__(self) -> Any:
        return next(self._self_chunks)

    def __enter__(self) -> "StreamProxy":
        enter = getattr(self.__wrapped__, "__enter__", None)
        if enter is not None:
            enter()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            exit_ = getattr(self.__wrapped__, "__exit__", None)
            return exit_(exc_type, exc, tb) if exit_ is not None else None
        finally:
            self._self_flow.end_stream()

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_flow.end_stream()


class AsyncStreamProxy(wrapt.ObjectProxy):
    """An async provider stream that feeds each chunk to the call flow."""

    def __init__(self, stream: Any, flow: "CallFlow") -> None:
        super().__init__(stream)
        self._self_flow = flow
        self._self_iterator = None

    def __aiter__(self) -> "AsyncStreamProxy":
        return self

    async def __anext__(self) -> Any:
        flow = self._self_flow
        if self._self_iterator is None:
            self._self_iterator = self.__wrapped__.__aiter__()
        while True:
            try:
                chunk = await self._self_iterator.__anext__()
            except StopAsyncIteration:
                flow.end_stream()
                raise
            except BaseException as error:
                flow.end_stream(error)
                raise
            if not flow.observe(chunk):
                return chunk

    async def __aenter__(self) -> "AsyncStreamProxy":
        enter = getattr(self.__wrapped__, "__aenter__", None)
        if enter is not None:
            await enter()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            exit_ = getattr(self.__wrapped__, "__aexit__", None)
            return await exit_(exc_type, exc, tb) if exit_ is not None else None
        finally:
            self._self_flow.end_stream()

    async def close(self) -> None:
        try:
            result = self.__wrapped__.close()
            if inspect.isawaitable(result):
                await result
        finally:
            self._self_flow.end_stream()

    async def aclose(self) -> None:
        await self.close()


class StreamManagerProxy(wrapt.ObjectProxy):
    """A lazy stream manager: the request runs at ``__enter__``, the span ends at ``__exit__``.

    The SDK's helper stream iterates itself internally (``text_stream``,
    ``get_final_message``), so the usage comes from its accumulated message snapshot.
    """

    def __init__(self, manager: Any, flow: "CallFlow") -> None:
        super().__init__(manager)
        self._self_flow = flow
        self._self_stream = None

    def __enter__(self) -> Any:
        flow = self._self_flow
        token = flow.enter()
        try:
            self._self_stream = self.__wrapped__.__enter__()
        except BaseException as error:
            flow.fail(error)
            raise
        finally:
            otel_context.detach(token)
        return self._self_stream

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            _end_managed(self._self_flow, self._self_stream, exc)

    def __del__(self) -> None:
        flow = getattr(self, "_self_flow", None)
        if flow is not None:
            _end_managed(flow, getattr(self, "_self_stream", None), None)


class AsyncStreamManagerProxy(wrapt.ObjectProxy):
    """The async form of :class:`StreamManagerProxy`."""

    def __init__(self, manager: Any, flow: "CallFlow") -> None:
        super().__init__(manager)
        self._self_flow = flow
        self._self_stream = None

    async def __aenter__(self) -> Any:
        flow = self._self_flow
        token = flow.enter()
        try:
            self._self_stream = await self.__wrapped__.__aenter__()
        except BaseException as error:
            flow.fail(error)
            raise
        finally:
            otel_context.detach(token)
        return self._self_stream

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            _end_managed(self._self_flow, self._self_stream, exc)

    def __del__(self) -> None:
        flow = getattr(self, "_self_flow", None)
        if flow is not None:
            _end_managed(flow, getattr(self, "_self_stream", None), None)


def _end_managed(flow: "CallFlow", stream: Any, error: BaseException | None) -> None:
    if flow.done:
        return
    try:
        snapshot = getattr(stream, "current_message_snapshot", None) if stream is not None else None
    except Exception:  # noqa: BLE001 - no snapshot yet (nothing received)
        snapshot = None
    if snapshot is not None:
        flow.observe(snapshot)
    flow.end_stream(error if isinstance(error, BaseException) else None)


class RawResponseProxy(wrapt.ObjectProxy):
    """A raw response whose ``parse()`` feeds the call flow (and proxies a parsed stream)."""

    def __init__(self, response: Any, flow: "CallFlow") -> None:
        super().__init__(response)
        self._self_flow = flow
        self._self_parsed: dict[Any, Any] = {}

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        key = (args, tuple(sorted(kwargs.items(), key=lambda item: item[0])))
        try:
            if key in self._self_parsed:
                return self._self_parsed[key]
        except TypeError:
            key = None
        parsed = self.__wrapped__.parse(*args, **kwargs)
        result = self._self_flow.succeed(parsed)
        if key is not None:
            self._self_parsed[key] = result
        return result

    def __del__(self) -> None:
        flow = getattr(self, "_self_flow", None)
        if flow is not None and not flow.call.stream:
            flow.end_stream()


class AsyncRawResponseProxy(wrapt.ObjectProxy):
    """The async form of :class:`RawResponseProxy` (``with_streaming_response`` on async clients)."""

    def __init__(self, response: Any, flow: "CallFlow") -> None:
        super().__init__(response)
        self._self_flow = flow
        self._self_result: Any = None
        self._self_has_result = False

    async def parse(self, *args: Any, **kwargs: Any) -> Any:
        if self._self_has_result and not args and not kwargs:
            return self._self_result
        parsed = await self.__wrapped__.parse(*args, **kwargs)
        result = self._self_flow.succeed(parsed)
        if not args and not kwargs:
            self._self_result, self._self_has_result = result, True
        return result

    def __del__(self) -> None:
        flow = getattr(self, "_self_flow", None)
        if flow is not None and not flow.call.stream:
            flow.end_stream()
