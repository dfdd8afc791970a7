"""The stand-in with no socket at all: an httpx transport, and SDK clients built on either mode.

openai 3.x / anthropic 2.x use ``httpx2``; older releases use ``httpx``. The transport is built
for whichever module the installed SDK imports (:func:`sdk_http_module`), because an SDK
rejects the other library's client objects. A truncated reply raises the module's
``RemoteProtocolError`` mid-body, as a dropped connection does over a socket.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from otel_margin.providers import register_host
from otel_margin.standin.core import RecordedRequest, StandIn
from otel_margin.standin.server import StandInServer
from otel_margin.standin.wire import StandInResponse

IN_PROCESS_OPENAI_URL = "http://standin.local/v1"
"""``base_url`` of SDK clients built on the in-process transport (never resolved)."""

IN_PROCESS_ANTHROPIC_URL = "http://standin.local"

_TRUNCATED = "peer closed connection without sending complete message body (stand-in scenario cut-stream)"


def sdk_http_module(sdk: str = "openai") -> ModuleType:
    """Return the HTTP library module (``httpx2`` or ``httpx``) the installed ``sdk`` builds on."""
    base_client = importlib.import_module(f"{sdk}._base_client")
    module = getattr(base_client, "httpx2", None) or getattr(base_client, "httpx", None)
    if module is None:
        raise RuntimeError(f"cannot tell which HTTP library {sdk} uses; pass http_module= explicitly")
    return module


def in_process_transport(standin: StandIn | None = None, *, http_module: ModuleType | None = None) -> Any:
    """Return a sync+async transport (for ``http_module``, default: the SDKs') answering with ``standin``.

    The transport has ``.standin`` and ``.requests`` like :class:`StandInServer`.
    """
    module = http_module if http_module is not None else sdk_http_module()
    return _transport_class(module)(standin if standin is not None else StandIn())


def openai_client(target: Any, *, async_: bool = False, max_retries: int = 0, **kwargs: Any) -> Any:
    """Build an ``openai.OpenAI`` (or ``AsyncOpenAI``) client talking to the stand-in.

    ``target`` is a :class:`StandInServer`, a base URL string, or an in-process transport.
    Extra keyword arguments go to the client constructor.
    """
    import openai

    cls = openai.AsyncOpenAI if async_ else openai.OpenAI
    return cls(**_client_options(target, async_, max_retries, "openai", kwargs))


def anthropic_client(target: Any, *, async_: bool = False, max_retries: int = 0, **kwargs: Any) -> Any:
    """Build an ``anthropic.Anthropic`` (or ``AsyncAnthropic``) client talking to the stand-in.

    ``target`` is a :class:`StandInServer`, a base URL string, or an in-process transport.
    """
    import anthropic

    cls = anthropic.AsyncAnthropic if async_ else anthropic.Anthropic
    return cls(**_client_options(target, async_, max_retries, "anthropic", kwargs))


def _client_options(target: Any, async_: bool, max_retries: int, sdk: str, extra: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {"api_key": "standin-key", "max_retries": max_retries}
    if isinstance(target, StandInServer):
        options["base_url"] = target.openai_base_url if sdk == "openai" else target.anthropic_base_url
    elif isinstance(target, str):
        options["base_url"] = target
    elif hasattr(target, "standin"):
        module = sdk_http_module(sdk)
        transport_class = _transport_class(module)
        if not isinstance(target, transport_class):
            # openai 2.x speaks httpx, anthropic >= 2 httpx2: same stand-in, the SDK's own transport.
            target = transport_class(target.standin)
        options["base_url"] = IN_PROCESS_OPENAI_URL if sdk == "openai" else IN_PROCESS_ANTHROPIC_URL
        options["http_client"] = (module.AsyncClient if async_ else module.Client)(transport=target)
    else:
        raise TypeError(
            f"cannot build a {sdk} client for {target!r}; pass a StandInServer, a base URL or in_process_transport()"
        )
    if sdk == "openai" and not isinstance(target, str):
        # The stand-in impersonates OpenAI: its calls are OpenAI's, priced from OpenAI's catalog.
        register_host(urlsplit(options["base_url"]).netloc, "openai")
    options.update(extra)
    return options


_CLASSES: dict[str, type] = {}


def _transport_class(module: ModuleType) -> type:
    """Build (once per HTTP module) the transport class on that module's base classes."""
    if module.__name__ in _CLASSES:
        return _CLASSES[module.__name__]

    class Body(module.SyncByteStream, module.AsyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, reply: StandInResponse, request: Any) -> None:
            self._reply = reply
            self._request = request

        def __iter__(self) -> Iterator[bytes]:
            for chunk, delay in _pieces(self._reply):
                if delay:
                    time.sleep(delay)
                yield chunk
            if self._reply.truncated:
                raise module.RemoteProtocolError(_TRUNCATED, request=self._request)

        async def __aiter__(self) -> AsyncIterator[bytes]:
            for chunk, delay in _pieces(self._reply):
                if delay:
                    await asyncio.sleep(delay)
                yield chunk
            if self._reply.truncated:
                raise module.RemoteProtocolError(_TRUNCATED, request=self._request)

    class InProcessTransport(module.BaseTransport, module.AsyncBaseTransport):  # type: ignore[name-defined,misc]
        """Answers requests with a :class:`StandIn`, in the calling thread / event loop."""

        def __init__(self, standin: StandIn) -> None:
            self.standin = standin

        @property
        def requests(self) -> list[RecordedRequest]:
            """Every request received so far: ``(method, path, headers, parsed JSON body)``."""
            return self.standin.requests

        def handle_request(self, request: Any) -> Any:
            request.read()
            return self._respond(request)

        async def handle_async_request(self, request: Any) -> Any:
            await request.aread()
            return self._respond(request)

        def _respond(self, request: Any) -> Any:
            path = request.url.raw_path.decode("ascii", "replace")
            reply = self.standin.handle(request.method, path, dict(request.headers.items()), request.content)
            return module.Response(reply.status, headers=list(reply.headers), stream=Body(reply, request),
                                   request=request)

    _CLASSES[module.__name__] = InProcessTransport
    return InProcessTransport


def _pieces(reply: StandInResponse) -> Iterator[tuple[bytes, float]]:
    """Yield the reply's body pieces with the delay before each (the ``slow`` pacing)."""
    if reply.events is None:
        body = reply.body[: len(reply.body) // 2] if reply.truncated else reply.body
        yield body, reply.first_byte_delay
        return
    for index, event in enumerate(reply.events):
        yield event, reply.first_byte_delay if index == 0 else reply.chunk_delay
