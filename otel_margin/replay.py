"""Record the HTTP exchange behind an SDK call, and serve a recorded one instead of the network.

A cache hit must return exactly what the SDK would have returned: the same types on every
surface (sync and async, parsed, ``with_raw_response``, ``with_streaming_response``, ``stream=True``
and the ``stream()`` managers). Rebuilding those objects by hand needs the SDKs' private modules
and breaks with each release, so otel-margin does not: it stores the provider's HTTP response as
it came over the wire (status, headers, body — for a stream, every event), and on a hit lets the
SDK itself receive that response in place of the network's. The SDK then parses, wraps and
streams it exactly as it would the provider's.

Both SDKs send through their HTTP library's public ``Client.send`` / ``AsyncClient.send``
(``httpx2``, or ``httpx`` on older releases). :func:`install` wraps those once; the wrapper does
nothing unless the current OpenTelemetry context holds a :class:`Slot` (``SLOT_KEY``): the
pipeline puts one in an LLM call's context, and :func:`replaying` (serve this exchange, once) and
:func:`recording` (keep a copy of what the provider answers) do it for a block of code.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator

import wrapt
from opentelemetry import context as otel_context

HTTP_MODULES = ("httpx2", "httpx")
"""The HTTP libraries the SDKs send through, newest first."""

_DROPPED_HEADERS = frozenset({"set-cookie", "transfer-encoding"})
"""Headers not worth storing: cookies are per client, and the body is stored whole."""

STREAM_ENDS = (b"data: [DONE]", b"event: message_stop", b"event: response.completed")
"""The events that end a provider's stream (OpenAI chat, Anthropic messages, OpenAI responses).

The SDKs stop reading at them and close the response, so the bytes after them (a blank line)
are never read: a stream that reached one is complete.
"""


@dataclass(frozen=True, slots=True)
class Exchange:
    """A provider's HTTP response as it came over the wire: ``body`` still encoded per its headers."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def to_bytes(self) -> bytes:
        """One value for a store: a JSON line of status and headers, then the body."""
        head = json.dumps({"status": self.status, "headers": self.headers}, separators=(",", ":"))
        return head.encode() + b"\n" + self.body

    @classmethod
    def from_bytes(cls, data: bytes) -> "Exchange":
        """The exchange :meth:`to_bytes` wrote; ``ValueError`` for anything else."""
        head, separator, body = data.partition(b"\n")
        if not separator:
            raise ValueError("not a stored exchange: no header line")
        fields = json.loads(head)
        headers = tuple((str(name), str(value)) for name, value in fields["headers"])
        return cls(status=int(fields["status"]), headers=headers, body=body)

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (any case), or ``None``."""
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)


@dataclass(slots=True)
class Recording:
    """What :func:`recording` collects: every complete exchange of the call, in order."""

    exchanges: list[Exchange] = field(default_factory=list)

    @property
    def last(self) -> Exchange | None:
        """The exchange that answered the call (earlier ones were retried)."""
        return self.exchanges[-1] if self.exchanges else None


@dataclass(slots=True)
class Slot:
    """What the current call asks of the HTTP layer: serve ``exchange`` once, and/or keep copies in ``sink``."""

    exchange: Exchange | None = None
    sink: Recording | None = None
    served: bool = False


SLOT_KEY = otel_context.create_key("otel_margin.replay")
"""The OpenTelemetry context key holding the current call's :class:`Slot` (the pipeline sets it
in the call's context, so it reaches the request whatever SDK surface sends it)."""

_installed: set[str] = set()
_install_lock = threading.Lock()


@contextlib.contextmanager
def replaying(exchange: Exchange) -> Iterator[None]:
    """Inside the block, the first request an SDK sends is answered with ``exchange``, unsent.

    Later requests (there should be none: a stored success is not retried) go to the network.
    """
    with _attached(Slot(exchange=exchange)):
        yield


@contextlib.contextmanager
def recording() -> Iterator[Recording]:
    """Inside the block, keep a copy of every response an SDK reads to the end.

    A stream the caller left early is incomplete and not kept. The copy is added when the
    response is closed, which for a stream may be after the block: keep the :class:`Recording`.
    """
    sink = Recording()
    with _attached(Slot(sink=sink)):
        yield sink


@contextlib.contextmanager
def _attached(slot: Slot) -> Iterator[None]:
    install()
    token = otel_context.attach(otel_context.set_value(SLOT_KEY, slot))
    try:
        yield
    finally:
        otel_context.detach(token)


def install() -> None:
    """Wrap ``Client.send`` and ``AsyncClient.send`` of every installed HTTP library, once."""
    if _installed:
        return
    with _install_lock:
        for name in HTTP_MODULES:
            if name in _installed:
                continue
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            wrapt.wrap_function_wrapper(module, "Client.send", _sync_send(module))
            wrapt.wrap_function_wrapper(module, "AsyncClient.send", _async_send(module))
            _installed.add(name)


def _sync_send(module: Any):  # type: ignore[no-untyped-def]
    def send(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        slot = otel_context.get_value(SLOT_KEY)
        if slot is None:
            return wrapped(*args, **kwargs)
        replay = _take_replay(slot)
        if replay is not None:
            response = _stored_response(module, replay, _request(args, kwargs))
            if not kwargs.get("stream", False):
                response.read()
            return response
        sink = slot.sink
        if sink is None:
            return wrapped(*args, **kwargs)
        stream = kwargs.pop("stream", False)
        response = wrapped(*args, stream=True, **kwargs)
        response.stream = _tee_types(module)[0](response, sink)
        if not stream:
            try:
                response.read()
            except BaseException:
                response.close()
                raise
        return response

    return send


def _async_send(module: Any):  # type: ignore[no-untyped-def]
    async def send(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        slot = otel_context.get_value(SLOT_KEY)
        if slot is None:
            return await wrapped(*args, **kwargs)
        replay = _take_replay(slot)
        if replay is not None:
            response = _stored_response(module, replay, _request(args, kwargs))
            if not kwargs.get("stream", False):
                await response.aread()
            return response
        sink = slot.sink
        if sink is None:
            return await wrapped(*args, **kwargs)
        stream = kwargs.pop("stream", False)
        response = await wrapped(*args, stream=True, **kwargs)
        response.stream = _tee_types(module)[1](response, sink)
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response

    return send


def _take_replay(slot: Any) -> Exchange | None:
    if not isinstance(slot, Slot) or slot.exchange is None or slot.served:
        return None
    slot.served = True
    return slot.exchange


def _request(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0] if args else kwargs["request"]


def _stored_response(module: Any, exchange: Exchange, request: Any) -> Any:
    response = module.Response(
        exchange.status, headers=list(exchange.headers), stream=module.ByteStream(exchange.body), request=request
    )
    response.elapsed = datetime.timedelta(0)
    return response


class _Tee:
    """Passes a response's raw bytes on and keeps a copy; the copy is kept only if read to the end."""

    def __init__(self, response: Any, sink: Recording) -> None:
        self._inner = response.stream
        self._response = response
        self._sink = sink
        self._chunks: list[bytes] = []
        self._complete = False

    def _finish(self) -> None:
        if not self._complete and (self._response.headers.get("content-type") or "").startswith("text/event-stream"):
            tail = b"".join(self._chunks[-2:])
            self._complete = any(end in tail for end in STREAM_ENDS)
            if self._complete and not tail.endswith(b"\n\n"):
                self._chunks.append(b"\n\n")
        if self._complete:
            headers = tuple(
                (name, value) for name, value in self._response.headers.multi_items()
                if name.lower() not in _DROPPED_HEADERS
            )
            self._sink.exchanges.append(Exchange(self._response.status_code, headers, b"".join(self._chunks)))
            self._complete = False


class _SyncTee(_Tee):
    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._chunks.append(chunk)
            yield chunk
        self._complete = True

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._finish()


class _AsyncTee(_Tee):
    async def __aiter__(self):  # type: ignore[no-untyped-def]
        async for chunk in self._inner:
            self._chunks.append(chunk)
            yield chunk
        self._complete = True

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._finish()


_tees: dict[str, tuple[type, type]] = {}


def _tee_types(module: Any) -> tuple[type, type]:
    """The tees as the HTTP library's own stream types (it checks ``isinstance`` before reading)."""
    types = _tees.get(module.__name__)
    if types is None:
        types = _tees[module.__name__] = (
            type("SyncTee", (_SyncTee, module.SyncByteStream), {}),
            type("AsyncTee", (_AsyncTee, module.AsyncByteStream), {}),
        )
    return types
