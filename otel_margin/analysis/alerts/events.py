"""The alerts' history (``alert_events``): what fired, what is standing, what was sent where.

Deduplication follows Alertmanager's repeat interval: alerts are keyed by rule, feature and
customer, and a key fires (a new row, to be sent) only when its last firing is older than the
rule's cooldown, or when its severity rose (yellow to red). Otherwise the breach is *standing*:
its row is updated (last seen, current value) and nothing is sent. The state lives in the table,
so a restarted watcher, or another run of ``otel-margin alerts run``, neither re-sends a standing
alert nor forgets one not yet delivered.

Rows are updated by inserting them again with a higher ``version`` (a ``ReplacingMergeTree``,
read ``FINAL``). :func:`reconcile` is pure: it takes the history and an evaluation and says what
to write, so the rules of firing are tested without a store.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from contextlib import contextmanager
from importlib import resources
from string import Template
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from otel_margin.analysis.alerts.engine import Alert, Evaluation
from otel_margin.analysis.alerts.rules import SEVERITIES
from otel_margin.analysis.queries import query
from otel_margin.schema import DEFAULT_DATABASE, quote_identifier, render

WEEK = timedelta(days=7)
FATIGUE_PER_WEEK = 3
"""More alerts than this from one rule in a week means its thresholds are wrong (the method)."""
RETRY_WINDOW = timedelta(days=7)
"""An alert not yet delivered to a destination is retried at each run for this long after it fired."""
SHARDING_KEY = "cityHash64(rule, feature, customer)"
"""Cluster mode: every version of a key's rows on one shard, so FINAL replaces them."""

COLUMNS = (
    "event_id", "rule", "source", "severity", "feature", "customer", "value", "threshold", "trend", "driver",
    "details", "first_seen", "last_seen", "fired_at", "closed_at", "due", "delivered", "attempts", "last_error",
    "version",
)


@dataclass(frozen=True, slots=True)
class Event:
    """One row of ``alert_events``: one fired alert and what became of it."""

    event_id: str
    rule: str
    source: str
    severity: str
    feature: str
    customer: str
    value: float
    threshold: float
    trend: str
    driver: str
    details: Mapping[str, Any]
    first_seen: datetime
    """When the breach was first seen (kept while it stands, across firings)."""
    last_seen: datetime
    fired_at: datetime
    """When this row fired: the notification time the cooldown counts from."""
    closed_at: datetime | None
    """When it stopped being its key's live row; ``None`` while it is."""
    due: tuple[str, ...]
    """The destinations it is to be sent to (those configured when it fired)."""
    delivered: Mapping[str, datetime] = field(default_factory=dict)
    attempts: Mapping[str, int] = field(default_factory=dict)
    last_error: Mapping[str, str] = field(default_factory=dict)
    version: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.rule, self.feature, self.customer)

    def undelivered(self, destinations: Iterable[str]) -> list[str]:
        """The destinations among ``destinations`` it is due at and has not reached."""
        return [name for name in destinations if name in self.due and name not in self.delivered]


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What an evaluation means for the history."""

    current: tuple[tuple[Event, str], ...]
    """The row of each alert of the evaluation, with ``"new"`` (fired now) or ``"standing"``."""
    changed: tuple[Event, ...]
    """Rows to write (new rows and new versions of old ones)."""


def reconcile(
    history: Iterable[Event], evaluation: Evaluation, *, now: datetime,
    cooldown_for: Callable[[str], timedelta], destinations: Sequence[str],
) -> Reconciled:
    """Decide, for each breach of ``evaluation``, whether it fires or stands, and close what is gone.

    A key fires when it has no row, its last row fired ``cooldown_for(rule)`` or longer ago, or
    the new severity is worse than that row's. A live row whose rule ran without returning its
    key is closed; a rule that failed closes nothing (its breaches are unknown).
    """
    now = utc(now)
    latest: dict[tuple[str, str, str], Event] = {}
    for event in history:
        known = latest.get(event.key)
        if known is None or (event.fired_at, event.version) > (known.fired_at, known.version):
            latest[event.key] = event
    current: list[tuple[Event, str]] = []
    changed: list[Event] = []
    seen: set[tuple[str, str, str]] = set()
    for alert in evaluation.alerts:
        seen.add(alert.key)
        previous = latest.get(alert.key)
        if previous is not None and not _fires(previous, alert, now, cooldown_for(alert.rule)):
            # The row keeps the worst severity sent or seen since it fired: what a rise is measured against.
            worst = max(previous.severity, alert.severity, key=_rank)
            standing = replace(
                previous, severity=worst, value=alert.value, threshold=alert.threshold, trend=alert.trend,
                driver=alert.driver, details=dict(alert.details), source=alert.source, last_seen=now, closed_at=None,
                version=next_version(previous),
            )
            changed.append(standing)
            current.append((replace(standing, severity=alert.severity), "standing"))
            continue
        still_open = previous is not None and previous.closed_at is None
        if still_open:
            changed.append(replace(previous, closed_at=now, version=next_version(previous)))
        fired = Event(
            event_id=uuid.uuid4().hex, rule=alert.rule, source=alert.source, severity=alert.severity,
            feature=alert.feature, customer=alert.customer, value=alert.value, threshold=alert.threshold,
            trend=alert.trend, driver=alert.driver, details=dict(alert.details),
            first_seen=previous.first_seen if still_open else now, last_seen=now, fired_at=now, closed_at=None,
            due=tuple(destinations), version=next_version(None),
        )
        changed.append(fired)
        current.append((fired, "new"))
    for key, event in latest.items():
        if event.closed_at is None and key not in seen and event.source in evaluation.ran:
            changed.append(replace(event, closed_at=now, version=next_version(event)))
    return Reconciled(tuple(current), tuple(changed))


def _fires(previous: Event, alert: Alert, now: datetime, cooldown: timedelta) -> bool:
    if now - previous.fired_at >= cooldown:
        return True
    return _rank(alert.severity) > _rank(previous.severity)


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


def next_version(previous: Event | None) -> int:
    """A version above ``previous``'s: the clock in nanoseconds, or one more if the clock is behind."""
    now = time.time_ns()
    return now if previous is None else max(now, previous.version + 1)


def merge(history: Iterable[Event], changed: Iterable[Event]) -> list[Event]:
    """``history`` with ``changed`` rows replacing theirs (by ``event_id``), in firing order."""
    rows = {event.event_id: event for event in history}
    for event in changed:
        if event.event_id not in rows or event.version >= rows[event.event_id].version:
            rows[event.event_id] = event
    return sorted(rows.values(), key=lambda e: (e.fired_at, e.event_id))


def undelivered(history: Iterable[Event], destinations: Sequence[str], *, now: datetime) -> list[tuple[Event, str]]:
    """Each (row, destination) still to be sent: due there, not delivered, fired within :data:`RETRY_WINDOW`."""
    since = utc(now) - RETRY_WINDOW
    return [(event, name) for event in history if event.fired_at >= since for name in event.undelivered(destinations)]


def with_delivery(event: Event, destination: str, *, ok: bool, attempts: int, error: str, at: datetime) -> Event:
    """``event`` after a delivery to ``destination``: delivered at ``at``, or its error kept."""
    tried = {**event.attempts, destination: event.attempts.get(destination, 0) + attempts}
    errors = {name: text for name, text in event.last_error.items() if name != destination}
    delivered = dict(event.delivered)
    if ok:
        delivered[destination] = utc(at)
    else:
        errors[destination] = error
    return replace(event, delivered=delivered, attempts=tried, last_error=errors, version=next_version(event))


def weekly_counts(history: Iterable[Event], *, now: datetime) -> dict[str, int]:
    """Alerts fired per rule in the week up to ``now``: more than :data:`FATIGUE_PER_WEEK` is fatigue."""
    since = utc(now) - WEEK
    return dict(Counter(event.rule for event in history if event.fired_at > since))


# --- the table ---------------------------------------------------------------------------------


def table_statements(*, database: str = DEFAULT_DATABASE, cluster: str | None = None) -> list[str]:
    """The DDL of ``alert_events`` (``CREATE … IF NOT EXISTS``): ``ON CLUSTER`` with a
    ``ReplicatedReplacingMergeTree`` ``alert_events_local`` and a ``Distributed`` table when
    ``cluster`` is given, as :mod:`otel_margin.schema` renders the margin schema."""
    values = {"database": quote_identifier(database), "on_cluster": "", "local": "", "replicated": ""}
    if cluster is not None:
        values.update(on_cluster=f" ON CLUSTER {quote_identifier(cluster)}", cluster=quote_identifier(cluster),
                      local="_local", replicated="Replicated")
    text = resources.files("otel_margin.analysis").joinpath("sql", "alert_events_table.sql").read_text("utf-8")
    statements = [Template(text).substitute(values).strip().rstrip(";")]
    if cluster is not None:
        statements.append(render(
            "cluster/distributed_table.sql", **values, table=quote_identifier("alert_events"),
            local_table=quote_identifier("alert_events_local"), sharding_key=SHARDING_KEY,
        ))
    return statements


class HistoryError(Exception):
    """``alert_events`` cannot be created, read or written; the message names the table and the fix."""


def ensure_table(client: Any, *, database: str = DEFAULT_DATABASE, cluster: str | None = None) -> None:
    """Create ``alert_events`` if it does not exist (idempotent; the database must exist).

    Looked up first, so a watcher does not send DDL (``ON CLUSTER``: through the DDL queue) every run.
    """
    with _history_errors(database, "create"):
        exists = client.query(
            "SELECT count() FROM system.tables WHERE database = {database:String} AND name = 'alert_events'",
            parameters={"database": database},
        ).result_rows[0][0]
        if not exists:
            for statement in table_statements(database=database, cluster=cluster):
                client.command(statement)


def load_history(client: Any, *, now: datetime, longest_cooldown: timedelta,
                 database: str = DEFAULT_DATABASE) -> list[Event]:
    """The rows that decide this run: fired within the cooldown, the retry window or the week, or still open."""
    since = utc(now) - max(longest_cooldown, RETRY_WINDOW, WEEK)
    with _history_errors(database, "read"):
        result = client.query(query("alert_events_recent_query", database=database), parameters={"since": since})
    return [_event(dict(zip(result.column_names, row))) for row in result.result_rows]


def save(client: Any, events: Sequence[Event], *, database: str = DEFAULT_DATABASE) -> None:
    """Write ``events`` (new rows and new versions) in one insert."""
    if not events:
        return
    rows = [[_column(event, name) for name in COLUMNS] for event in events]
    with _history_errors(database, "write"):
        client.insert(f"{quote_identifier(database)}.alert_events", rows, column_names=list(COLUMNS))


@contextmanager
def _history_errors(database: str, action: str) -> Iterator[None]:
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    try:
        yield
    except OperationalError:
        raise  # the store is unreachable: not the table's problem
    except DatabaseError as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise HistoryError(
            f"cannot {action} the alerts' history {database}.alert_events ({detail[:400]}); the alerts command creates, "
            "reads and writes that table: use credentials that may (CREATE TABLE, SELECT and INSERT on it), or create "
            "it from otel_margin/analysis/sql/alert_events_table.sql"
        ) from error


def utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC time at the table's millisecond precision (naive means UTC)."""
    moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _column(event: Event, name: str) -> Any:
    value = getattr(event, name)
    if name == "details":
        return json.dumps(value, sort_keys=True)
    if name == "due":
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _event(row: dict[str, Any]) -> Event:
    row["details"] = json.loads(row["details"] or "{}")
    for name in ("first_seen", "last_seen", "fired_at"):
        row[name] = utc(row[name])
    row["closed_at"] = utc(row["closed_at"]) if row["closed_at"] is not None else None
    row["due"] = tuple(row["due"])
    row["delivered"] = {name: utc(at) for name, at in row["delivered"].items()}
    row["attempts"] = dict(row["attempts"])
    row["last_error"] = dict(row["last_error"])
    return Event(**row)
