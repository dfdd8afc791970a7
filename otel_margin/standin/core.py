"""The stand-in's handler core: one request in, one :class:`StandInResponse` out, no sockets.

``StandIn.handle`` routes by path to the OpenAI or Anthropic module, reads the scenario
headers, records the request and applies the ``error-NNN`` scenarios. Its only state is a
request counter (it makes ids unique), the prompt cache of Anthropic's API and the record of
requests; usage numbers never depend on that state except through the prompt cache.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from otel_margin.standin.anthropic_api import AnthropicAPI
from otel_margin.standin.openai_api import OpenAIAPI
from otel_margin.standin.wire import (
    Scenario,
    ScenarioError,
    StandInRequest,
    StandInResponse,
    parse_scenario,
)

_SCENARIO_ERRORS = {"error-400": 400, "error-429": 429, "error-500": 500, "error-529": 529}


class RecordedRequest(NamedTuple):
    """One request as the stand-in received it (the JSON body is ``None`` when it was not JSON)."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any


class StandIn:
    """The OpenAI + Anthropic stand-in, independent of how requests arrive (thread-safe)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        """Create a stand-in; ``clock`` gives the ``created`` timestamps (seconds since the epoch)."""
        self.openai = OpenAIAPI()
        self.anthropic = AnthropicAPI()
        self.requests: list[RecordedRequest] = []
        self._clock = clock
        self._serial = 0
        self._lock = threading.Lock()

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> StandInResponse:
        """Answer one HTTP request; never raises for any method, path, headers or body."""
        route = path.split("?", 1)[0].rstrip("/") or "/"
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        parsed, problem = _parse_json(body)
        with self._lock:
            self._serial += 1
            serial = self._serial
            self.requests.append(RecordedRequest(method.upper(), path, lowered, parsed))
        request = StandInRequest(
            method=method.upper(),
            path=route,
            headers=lowered,
            body=body,
            json=parsed if isinstance(parsed, dict) else {},
            scenario=Scenario(),
            serial=serial,
            created=int(self._clock()),
        )
        api: OpenAIAPI | AnthropicAPI = self.anthropic if _is_anthropic(route, lowered) else self.openai
        endpoint = api.routes.get(route)
        if endpoint is None:
            return api.error(request, 404, _not_found_message(api, request.method, route))
        if request.method != "POST":
            return api.error(request, 404, _not_found_message(api, request.method, route))
        try:
            scenario = parse_scenario(lowered)
        except ScenarioError as exc:
            return api.error(request, 400, str(exc))
        request = dataclasses.replace(request, scenario=scenario)
        for name, status in _SCENARIO_ERRORS.items():
            if name in scenario:
                return api.scenario_error(request, status)
        if problem is not None:
            return api.error(request, 400, problem)
        try:
            return endpoint(request)
        except Exception as exc:  # a stand-in bug must reach the client as a 500, not kill a thread
            return api.error(request, 500, f"stand-in internal error: {type(exc).__name__}: {exc}")


def _parse_json(body: bytes) -> tuple[Any, str | None]:
    if not body:
        return None, "We could not parse the JSON body of your request: it is empty."
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"We could not parse the JSON body of your request ({exc})."
    if not isinstance(parsed, dict):
        return parsed, "The JSON body of your request must be an object."
    return parsed, None


def _is_anthropic(route: str, headers: Mapping[str, str]) -> bool:
    return route.startswith("/v1/messages") or "anthropic-version" in headers


def _not_found_message(api: OpenAIAPI | AnthropicAPI, method: str, route: str) -> str:
    return "Not Found" if isinstance(api, AnthropicAPI) else f"Invalid URL ({method} {route})"

