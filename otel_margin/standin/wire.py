"""The values both provider modules and both adapters share: request, response, scenario.

A :class:`StandInResponse` says everything an adapter needs to put a reply on the wire —
status, headers, a body or SSE events, pacing for the ``slow`` scenario and whether to drop the
connection before the message is complete (``cut-stream``) — so the HTTP server and the
in-process transport behave the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from otel_margin.standin.tokens import DEFAULT_OUTPUT_TOKENS

SCENARIO_HEADER = "x-standin-scenario"
"""Request header naming the scenarios to play (comma-separated)."""

OUTPUT_TOKENS_HEADER = "x-standin-output-tokens"
"""Request header forcing the reply's output tokens (and its length in words)."""

USAGE_HEADER = "x-standin-usage"
"""Request header: a JSON object whose fields replace those of the reply's usage, whatever they
are (``{"prompt_tokens": 1e30}``, ``{"output_tokens": "seven"}``), to play malformed usage."""

SCENARIOS = frozenset(
    {
        "tools",
        "reasoning",
        "cached",
        "error-400",
        "error-429",
        "error-500",
        "error-529",
        "no-usage",
        "null-usage-fields",
        "cut-stream",
        "malformed",
        "slow",
    }
)
"""Every scenario name the stand-in understands (see the package docstring)."""

MAX_FORCED_OUTPUT_TOKENS = 100_000
"""Upper bound of ``x-standin-output-tokens``, so a typo cannot make a gigabyte reply."""

SLOW_FIRST_BYTE_SECONDS = 0.05
SLOW_CHUNK_SECONDS = 0.02
SLOW_TOTAL_SECONDS = 1.0
"""Pacing of the ``slow`` scenario: a first-byte delay and a per-chunk delay whose sum over one
stream never exceeds ``SLOW_TOTAL_SECONDS``."""


class ScenarioError(ValueError):
    """A stand-in control header has a value the stand-in cannot play (answered with a 400)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """The scenarios one request asked for through its control headers."""

    names: frozenset[str] = frozenset()
    output_tokens: int | None = None
    usage: Mapping[str, Any] | None = None
    """Fields replacing the reply's usage fields (:data:`USAGE_HEADER`)."""

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def usage_over(self, usage: dict[str, Any] | None) -> dict[str, Any] | None:
        """``usage`` with the fields :data:`USAGE_HEADER` replaces (``None`` stays ``None``: no usage)."""
        return usage if usage is None or not self.usage else {**usage, **self.usage}


def parse_scenario(headers: Mapping[str, str]) -> Scenario:
    """Read the control headers (lower-case names); raise :class:`ScenarioError` on a bad value."""
    raw = headers.get(SCENARIO_HEADER, "")
    names = frozenset(part.strip().lower() for part in raw.split(",") if part.strip())
    unknown = sorted(names - SCENARIOS)
    if unknown:
        raise ScenarioError(
            f"unknown stand-in scenario {', '.join(repr(n) for n in unknown)} in header "
            f"{SCENARIO_HEADER}; use any of: {', '.join(sorted(SCENARIOS))}"
        )
    forced = headers.get(OUTPUT_TOKENS_HEADER)
    output_tokens = None
    if forced is not None:
        try:
            output_tokens = int(forced.strip())
        except ValueError:
            output_tokens = -1
        if not 1 <= output_tokens <= MAX_FORCED_OUTPUT_TOKENS:
            raise ScenarioError(
                f"header {OUTPUT_TOKENS_HEADER}={forced!r} is not a whole number of tokens; "
                f"send an integer from 1 to {MAX_FORCED_OUTPUT_TOKENS}"
            )
    return Scenario(names=names, output_tokens=output_tokens, usage=_usage_fields(headers.get(USAGE_HEADER)))


def _usage_fields(raw: str | None) -> Mapping[str, Any] | None:
    if raw is None:
        return None
    try:
        fields = json.loads(raw)
    except ValueError:
        fields = None
    if not isinstance(fields, dict):
        raise ScenarioError(
            f"header {USAGE_HEADER}={raw[:200]!r} is not a JSON object; send the usage fields to replace, "
            'e.g. {"prompt_tokens": 1000000000000000000000000000000}'
        )
    return fields


@dataclass(frozen=True, slots=True)
class StandInRequest:
    """One parsed request as the provider modules see it."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    json: dict[str, Any]
    scenario: Scenario
    serial: int
    created: int

    def new_id(self, prefix: str, length: int = 24, label: str = "") -> str:
        """Return an id unique to this request (body hash + serial), stable for a given ``label``."""
        digest = hashlib.sha256(b"%d|%s|%s|" % (self.serial, prefix.encode(), label.encode()) + self.body)
        alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
        number = int.from_bytes(digest.digest(), "big")
        chars = []
        for _ in range(length):
            number, rest = divmod(number, len(alphabet))
            chars.append(alphabet[rest])
        return prefix + "".join(chars)

    @property
    def stream(self) -> bool:
        """Whether the request asked for a streamed reply."""
        return self.json.get("stream") is True


@dataclass(frozen=True, slots=True)
class StandInResponse:
    """A reply ready for an adapter: a ``body`` or, for a stream, ``events`` (SSE byte chunks).

    ``truncated`` tells the adapter to drop the connection without completing the HTTP message:
    after the last event of a stream, or half-way through ``body``. ``json`` is the payload of
    a JSON body (for tests and logs; not compared).
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    events: tuple[bytes, ...] | None = None
    first_byte_delay: float = 0.0
    chunk_delay: float = 0.0
    truncated: bool = False
    json: Any = field(default=None, compare=False)

    @property
    def is_stream(self) -> bool:
        """Whether the reply is a server-sent-event stream."""
        return self.events is not None


def json_response(
    request: StandInRequest | None, status: int, payload: Any, headers: Mapping[str, str]
) -> StandInResponse:
    """Build a JSON reply, applying the ``slow`` and ``cut-stream`` scenarios to it."""
    scenario = request.scenario if request is not None else Scenario()
    return StandInResponse(
        status=status,
        headers=(("content-type", "application/json"), *headers.items()),
        body=json.dumps(payload, separators=(",", ":")).encode(),
        first_byte_delay=SLOW_FIRST_BYTE_SECONDS if "slow" in scenario else 0.0,
        truncated="cut-stream" in scenario and status == 200,
        json=payload,
    )


def stream_response(request: StandInRequest, events: list[bytes], headers: Mapping[str, str]) -> StandInResponse:
    """Build an SSE reply; ``cut-stream`` keeps the first half of the events and drops the line."""
    cut = "cut-stream" in request.scenario
    if cut:
        events = events[: max(1, len(events) // 2)]
    slow = "slow" in request.scenario
    return StandInResponse(
        status=200,
        headers=(
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
            *headers.items(),
        ),
        events=tuple(events),
        first_byte_delay=SLOW_FIRST_BYTE_SECONDS if slow else 0.0,
        chunk_delay=min(SLOW_CHUNK_SECONDS, SLOW_TOTAL_SECONDS / len(events)) if slow and events else 0.0,
        truncated=cut,
    )


def sse(data: Any, event: str | None = None) -> bytes:
    """Encode one server-sent event (``data`` is JSON-encoded unless it is already a string)."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


def output_budget(request: StandInRequest, cap: Any) -> tuple[int, bool]:
    """Return (output tokens, whether the cap cut the reply) for a request with length ``cap``."""
    wanted = request.scenario.output_tokens or DEFAULT_OUTPUT_TOKENS
    if isinstance(cap, int) and not isinstance(cap, bool) and 0 < cap < wanted:
        return cap, True
    return wanted, False

