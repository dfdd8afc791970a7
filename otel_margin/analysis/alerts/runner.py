"""One run of the alerts (evaluate, record, deliver), and the watch loop that repeats it.

A run holds the store only while it queries and writes (in embedded mode chDB is one process at
a time; a service's exporter gets it back between runs): one session evaluates the rules and
updates the history, the webhooks are sent with no store held, and a second short session
records what was delivered. The policy file is read at every run, so a watcher follows edits;
a run that fails (the store unreachable, a broken policy file) is reported and the watcher
carries on at the next interval.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

from otel_margin.analysis.alerts import events
from otel_margin.analysis.alerts.delivery import BACKOFF_SECONDS, RETRIES, Delivery, deliver
from otel_margin.analysis.alerts.engine import evaluate
from otel_margin.analysis.alerts.events import Event
from otel_margin.analysis.alerts.rules import RuleFailure, load_rules
from otel_margin.analysis.alerts.settings import AlertSettings, alert_settings
from otel_margin.policy import Policy

DEFAULT_INTERVAL = 300.0
"""Seconds between runs of ``otel-margin alerts run --watch``."""


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one run found and did."""

    current: tuple[tuple[Event, str], ...] = ()
    """Each breach found, with ``"new"`` (fired now) or ``"standing"`` (within its cooldown)."""
    failures: tuple[RuleFailure, ...] = ()
    deliveries: tuple[tuple[Event, Delivery], ...] = ()
    weekly: Mapping[str, int] = field(default_factory=dict)
    """Alerts fired per rule in the last 7 days."""
    settings: AlertSettings = field(default_factory=AlertSettings)
    no_data: bool = False
    """The database has no ``llm_calls`` table yet: nothing was evaluated or created."""
    unrecorded: str = ""
    """Why the deliveries could not be recorded (they may be sent again), if they could not."""


def thresholds(policy: Policy, *, now: datetime, client: Any, database: str) -> dict[str, Any]:
    """The parameters rules may bind: :func:`otel_margin.analysis.alerts.thresholds.parameters`."""
    try:
        from otel_margin.analysis.alerts.thresholds import parameters
    except ModuleNotFoundError as error:
        if error.name != "otel_margin.analysis.alerts.thresholds":
            raise
        return {}  # no thresholds module: a rule naming a parameter is reported as using an unknown one
    return dict(parameters(policy, now=now, client=client, database=database))


class AlertRunner:
    """Runs the alerts against one store; holds no connection between runs.

    ``policy`` is called at every run (so edits apply); ``parameters(policy, now=, client=,
    database=)`` gives the values rules may bind; ``clock`` the current time (UTC); ``rules_dirs`` come after the policy's
    ``rules_dir``; ``builtin`` false skips the shipped rules.
    """

    def __init__(
        self, config: Any, *, policy: Callable[[], Policy], rules_dirs: Sequence[str] = (), builtin: bool = True,
        cluster: str | None = None, parameters: Callable[..., Mapping[str, Any]] = thresholds,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc), retries: int = RETRIES,
        backoff: float = BACKOFF_SECONDS, http_client: Any = None,
    ) -> None:
        self.config = config
        self.policy = policy
        self.rules_dirs = tuple(rules_dirs)
        self.builtin = builtin
        self.cluster = cluster
        self.parameters = parameters
        self.clock = clock
        self.retries = retries
        self.backoff = backoff
        self.http_client = http_client

    def run_once(self, stop: threading.Event | None = None) -> RunResult:
        """Evaluate every rule once, update the history, send what is due. Raises
        :class:`~otel_margin.policy.PolicyError`, :class:`~.events.HistoryError` and
        :class:`~otel_margin.exporters.storage.StorageUnavailable`; rule failures are in the result."""
        from otel_margin.exporters.catchup import insert_spooled_rows
        from otel_margin.exporters.storage import session

        policy = self.policy()
        settings = alert_settings(policy)
        now = events.utc(self.clock())
        directories = ([settings.rules_dir] if settings.rules_dir is not None else []) + list(self.rules_dirs)
        rules, failures = load_rules(directories, builtin=self.builtin)
        database = self.config.database
        longest = max([settings.cooldown, *settings.rule_cooldowns.values()], default=settings.cooldown)
        destinations = [webhook.name for webhook in settings.webhooks]
        with session(self.config) as client:
            insert_spooled_rows(client, self.config)
            if not _has_calls(client, database):
                return RunResult(failures=tuple(failures), settings=settings, no_data=True)
            events.ensure_table(client, database=database, cluster=self.cluster)
            history = events.load_history(client, now=now, longest_cooldown=longest, database=database)
            evaluation = evaluate(client, rules, self._parameters(policy, now, rules, client), database=database,
                                  failures=failures)
            reconciled = events.reconcile(history, evaluation, now=now, cooldown_for=settings.cooldown_for,
                                          destinations=destinations)
            events.save(client, reconciled.changed, database=database)
        history = events.merge(history, reconciled.changed)
        weekly = events.weekly_counts(history, now=now)
        by_name = {webhook.name: webhook for webhook in settings.webhooks}
        pending = [(event, by_name[name]) for event, name in events.undelivered(history, destinations, now=now)]
        deliveries = deliver(pending, settings.runbook, weekly=weekly, client=self.http_client, retries=self.retries,
                             backoff=self.backoff, stop=stop)
        unrecorded = self._record(deliveries) if deliveries else ""
        return RunResult(reconciled.current, evaluation.failures, tuple(deliveries), weekly, settings,
                         unrecorded=unrecorded)

    def _parameters(self, policy: Policy, now: datetime, rules: Sequence[Any], client: Any) -> Mapping[str, Any]:
        if not any(rule.parameters for rule in rules):
            return {}  # nothing to bind: the thresholds are not needed
        return self.parameters(policy, now=now, client=client, database=self.config.database)

    def _record(self, deliveries: Sequence[tuple[Event, Delivery]]) -> str:
        from otel_margin.exporters.storage import StorageUnavailable, session

        updated: dict[str, Event] = {}
        at = self.clock()
        for event, delivery in deliveries:
            event = updated.get(event.event_id, event)
            updated[event.event_id] = events.with_delivery(
                event, delivery.destination, ok=delivery.ok, attempts=delivery.attempts, error=delivery.error, at=at)
        try:
            with session(self.config) as client:
                events.save(client, list(updated.values()), database=self.config.database)
        except (StorageUnavailable, events.HistoryError) as error:
            return (f"what was sent could not be recorded ({error}); alerts delivered in this run may be sent again "
                    "at the next run")
        return ""


def watch(runner: AlertRunner, *, interval: float, stop: threading.Event,
          report: Callable[[RunResult], None], report_error: Callable[[Exception], None]) -> None:
    """Run ``runner`` every ``interval`` seconds until ``stop`` is set; a failed run is reported, never fatal."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            report(runner.run_once(stop))
        except Exception as error:  # noqa: BLE001 - a watcher outlives one bad run (store down, policy typo)
            report_error(error)
        stop.wait(max(0.0, interval - (time.monotonic() - started)))


def _has_calls(client: Any, database: str) -> bool:
    return bool(client.query(
        "SELECT count() FROM system.tables WHERE database = {database:String} AND name = 'llm_calls'",
        parameters={"database": database},
    ).result_rows[0][0])

