"""Sending alerts: one shape of an alert's fields, and webhooks (generic JSON or Slack) with retries.

Each alert is one POST. A transport error, a timeout, ``408``, ``429`` or a ``5xx`` answer is
retried with jittered exponential backoff; other answers are final for this run. A failure is
reported and recorded in the history (:func:`~.events.with_delivery`), and the alert is tried
again at the next run; it never stops a watcher. Every POST carries the alert's ``event_id``
(in the body and as ``Idempotency-Key``), so a receiver can drop the copy a crash between
sending and recording may cause.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from otel_margin.analysis.alerts.events import Event
from otel_margin.analysis.alerts.settings import ZONES, Runbook, Webhook

RETRIES = 2
"""Retries of a failed POST within one run (so at most three attempts)."""
BACKOFF_SECONDS = 0.5
"""The first retry's wait; each later one doubles it (times a random 0.5–1)."""
_RETRY_STATUS = (408, 429)
_ICONS = {"red": ":red_circle:", "yellow": ":large_yellow_circle:", "info": ":large_green_circle:"}


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one POST to one destination."""

    destination: str
    ok: bool
    attempts: int
    error: str = ""
    """Empty when delivered; otherwise what went wrong, naming the destination (never its URL)."""


def alert_fields(event: Event, runbook: Runbook, *, status: str | None = None,
                 weekly_count: int | None = None) -> dict[str, Any]:
    """An alert as the JSON object ``--format json`` prints and the ``json`` webhook sends."""
    fields: dict[str, Any] = {
        "rule": event.rule, "severity": event.severity, "zone": ZONES.get(event.severity, event.severity),
        "feature": event.feature, "customer": event.customer, "value": event.value, "threshold": event.threshold,
        "trend": event.trend, "driver": event.driver,
        "responder": runbook.responder_for(event.feature), "response": runbook.response_for(event.severity),
        "first_seen": _iso(event.first_seen), "last_seen": _iso(event.last_seen), "fired_at": _iso(event.fired_at),
        "event_id": event.event_id, "source": event.source, "details": dict(event.details),
    }
    if status is not None:
        fields["status"] = status
    if weekly_count is not None:
        fields["rule_fired_this_week"] = weekly_count
    return fields


def body(webhook: Webhook, fields: Mapping[str, Any]) -> dict[str, Any]:
    """What ``webhook`` is sent for one alert: the fields, or a Slack message."""
    return slack_message(fields) if webhook.format == "slack" else dict(fields)


def slack_message(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook payload: ``{"text": …, "blocks": …}``."""
    who = _slack(fields["feature"]) + (f" (customer {_slack(fields['customer'])})" if fields["customer"] else "")
    icon = _ICONS.get(fields["severity"], "")
    headline = (f"{icon} {fields['zone'].upper()} {_slack(fields['rule'])}: {who}: "
                f"{_number(fields['value'])} against a threshold of {_number(fields['threshold'])}")
    detail = (f"*Trend:* {_slack(fields['trend']) or '-'}   *Driver:* {_slack(fields['driver']) or '-'}\n"
              f"*First responder:* {_slack(fields['responder'])}: {_slack(fields['response'])}")
    return {
        "text": f"{headline}. Driver: {_slack(fields['driver']) or '-'}. {_slack(fields['responder'])}: "
                f"{_slack(fields['response'])}.",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": detail}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": (
                f"first seen {fields['first_seen']} · event {fields['event_id']} · otel-margin")}]},
        ],
    }


def post(webhook: Webhook, payload: Mapping[str, Any], *, event_id: str, client: Any,
         retries: int = RETRIES, backoff: float = BACKOFF_SECONDS, stop: threading.Event | None = None) -> Delivery:
    """POST ``payload`` to ``webhook`` through ``client`` (an ``httpx.Client``), retrying what may pass later.

    Never raises for the destination's failures. ``stop`` (set by Ctrl-C / SIGTERM) cuts the
    waits between retries short; the failure is then recorded and retried at the next run.
    """
    import httpx

    headers = {"Content-Type": "application/json", "User-Agent": "otel-margin", "Idempotency-Key": event_id,
               **webhook.headers}
    # A rule's extra columns may hold what JSON has no type for (an IP address, a UUID): sent as text.
    content = json.dumps(payload, default=str).encode("utf-8")
    attempts, problems = 0, []
    for attempt in range(retries + 1):
        attempts += 1
        try:
            response = client.post(webhook.url, content=content, headers=headers, timeout=webhook.timeout_seconds)
        except httpx.TimeoutException:
            problems.append(f"no answer within {webhook.timeout_seconds:g} s")
        except httpx.HTTPError as error:
            problems.append(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'cannot connect'}")
        except Exception as error:  # noqa: BLE001 - a destination's failure never stops the run or the watcher
            problems.append(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'failed'}")
            break
        else:
            if response.is_success:
                return Delivery(webhook.name, True, attempts)
            problems.append(f"HTTP {response.status_code} {response.reason_phrase}".rstrip())
            if response.status_code < 500 and response.status_code not in _RETRY_STATUS:
                break  # the request itself is refused: the URL, the headers or the format need a fix
        if attempt < retries:
            delay = backoff * (2 ** attempt) * random.uniform(0.5, 1.0)
            if stop is None:
                time.sleep(delay)
            elif stop.wait(delay):
                break
    host = urlsplit(webhook.url).hostname or "?"
    return Delivery(webhook.name, False, attempts,
                    f"webhook {webhook.name!r} ({host}): {', then '.join(problems)} ({attempts} attempt(s)); "
                    "the alert stays undelivered and is sent again at the next run")


def deliver(pending: Iterable[tuple[Event, Webhook]], runbook: Runbook, *, weekly: Mapping[str, int],
            client: Any = None, retries: int = RETRIES, backoff: float = BACKOFF_SECONDS,
            stop: threading.Event | None = None) -> list[tuple[Event, Delivery]]:
    """Send each (alert, destination) of ``pending``; stops early (the rest left for the next run) when ``stop`` is set."""
    import httpx

    results = []
    own = client is None
    client = httpx.Client() if own else client
    try:
        for event, webhook in pending:
            if stop is not None and stop.is_set():
                break
            fields = alert_fields(event, runbook, weekly_count=weekly.get(event.rule))
            results.append((event, post(webhook, body(webhook, fields), event_id=event.event_id, client=client,
                                        retries=retries, backoff=backoff, stop=stop)))
    finally:
        if own:
            client.close()
    return results


def sample_event(now: datetime | None = None) -> Event:
    """The alert ``otel-margin alerts test`` sends: clearly a test, shaped like a real one."""
    now = now or datetime.now(timezone.utc)
    return Event(
        event_id=f"test-{int(now.timestamp())}", rule="otel_margin_test", source="otel-margin alerts test",
        severity="yellow", feature="example-feature", customer="example-customer", value=48.5, threshold=50.0,
        trend="down", driver="a test alert from `otel-margin alerts test`: nothing to do", details={},
        first_seen=now, last_seen=now, fired_at=now, closed_at=None, due=(),
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _number(value: float) -> str:
    return f"{value:.6g}"


def _slack(text: Any) -> str:
    # Slack's three control characters in mrkdwn; names come from outside (baggage, rule SQL).
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
