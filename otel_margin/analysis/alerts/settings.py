"""How alerts are evaluated and delivered, from the policy file's ``[alerts]`` table.

The keys (declared in :data:`otel_margin.policy.SCHEMA`, documented in docs/policy.md)::

    [alerts]
    cooldown_hours = 24                      # or { default = 24, margin_3d_red = 6 } by rule
    rules_dir = "alert-rules"                # the user's rule files, beside the policy file

    [[alerts.webhooks]]                      # one per destination
    name = "slack-margin"
    url = "https://hooks.slack.com/services/T000/B000/XXXX"
    format = "slack"                         # or "json" (the default)

    [alerts.runbook]
    responder = "margin-oncall@example.com"  # the first responder, unless the feature has one
    responders = { search = "jane@example.com" }
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping

from otel_margin.policy import Policy, PolicyError

DEFAULT_COOLDOWN = timedelta(hours=24)
"""How long a standing alert (same rule, feature and customer) is not sent again."""
DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_RESPONSE = {"red": "act within 24 h", "yellow": "investigate within 48 h", "info": "routine"}
"""The method's response times by severity (``info`` is the green zone)."""
ZONES = {"red": "red", "yellow": "yellow", "info": "green"}
"""The margin zone of each severity."""
DEFAULT_RESPONDER = "(none: set [alerts.runbook] responder)"


@dataclass(frozen=True, slots=True)
class Webhook:
    """A destination alerts are POSTed to (``[[alerts.webhooks]]``)."""

    name: str
    url: str = field(repr=False)
    """May carry a secret (Slack's incoming webhooks do): never printed."""
    format: str = "json"
    """``json``: the alert's fields as an object; ``slack``: ``{"text": …, "blocks": …}``."""
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class Runbook:
    """Who responds to an alert, and how fast (``[alerts.runbook]``)."""

    responder: str = DEFAULT_RESPONDER
    responders: Mapping[str, str] = field(default_factory=dict)
    """First responder by feature."""
    response: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_RESPONSE))
    """What to do and how fast, by severity."""

    def responder_for(self, feature: str) -> str:
        """The feature's first responder, else the default one."""
        return self.responders.get(feature, self.responder)

    def response_for(self, severity: str) -> str:
        """The response time of ``severity`` (``act within 24 h`` for red)."""
        return self.response.get(severity, DEFAULT_RESPONSE.get(severity, ""))


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """The ``[alerts]`` settings for evaluation and delivery."""

    webhooks: tuple[Webhook, ...] = ()
    runbook: Runbook = field(default_factory=Runbook)
    cooldown: timedelta = DEFAULT_COOLDOWN
    rule_cooldowns: Mapping[str, timedelta] = field(default_factory=dict)
    """Cooldown by rule (the ``rule`` column), where the policy sets one."""
    rules_dir: Path | None = None
    """The user's rule files; a relative path in the policy file is relative to that file."""

    def cooldown_for(self, rule: str) -> timedelta:
        """How long an alert of ``rule`` is not sent again for the same feature and customer."""
        return self.rule_cooldowns.get(rule, self.cooldown)


def alert_settings(policy: Policy) -> AlertSettings:
    """The ``[alerts]`` settings of ``policy`` (defaults for what it does not set).

    Raises :class:`~otel_margin.policy.PolicyError` naming the line when two webhooks share a name.
    """
    alerts: Mapping[str, Any] = policy.document.get("alerts", {})
    webhooks, names = [], {}
    for index, entry in enumerate(alerts.get("webhooks", [])):
        name = entry["name"]
        if name in names:
            raise PolicyError(
                f"{policy.where('alerts', 'webhooks')}: [[alerts.webhooks]] entries {names[name] + 1} and "
                f"{index + 1} are both named {name!r}; give each destination its own name (the history "
                "records what was sent to each by name)"
            )
        names[name] = index
        webhooks.append(Webhook(
            name=name, url=entry["url"], format=entry.get("format", "json"),
            timeout_seconds=float(entry.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)),
            headers=dict(entry.get("headers", {})),
        ))
    book = alerts.get("runbook", {})
    runbook = Runbook(
        responder=book.get("responder", DEFAULT_RESPONDER),
        responders=dict(book.get("responders", {})),
        response={severity: book.get(severity, text) for severity, text in DEFAULT_RESPONSE.items()},
    )
    cooldown, rule_cooldowns = DEFAULT_COOLDOWN, {}
    hours = alerts.get("cooldown_hours")
    if isinstance(hours, Mapping):
        rule_cooldowns = {rule: _hours(value) for rule, value in hours.items() if rule != "default"}
        cooldown = _hours(hours["default"]) if "default" in hours else DEFAULT_COOLDOWN
    elif hours is not None:
        cooldown = _hours(hours)
    rules_dir = None
    if "rules_dir" in alerts:
        rules_dir = Path(alerts["rules_dir"]).expanduser()
        if not rules_dir.is_absolute() and policy.source is not None:
            rules_dir = Path(policy.source).resolve().parent / rules_dir
    return AlertSettings(tuple(webhooks), runbook, cooldown, rule_cooldowns, rules_dir)


def _hours(value: Decimal) -> timedelta:
    return timedelta(hours=float(value))
