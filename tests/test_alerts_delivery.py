"""Sending alerts to webhooks: real HTTP to local receivers, real chDB for the history.

A receiver is a tiny ``http.server`` on a thread whose answers are scripted (``500``, a timeout,
then ``200``). The alerts cross a restart of the watcher (a new engine object over the same
store): none is lost, none is sent twice within its cooldown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chdb_fixtures import chdb_client, chdb_path, database  # noqa: F401 - fixtures
from otel_margin.analysis.alerts.runner import AlertRunner
from otel_margin.exporters.storage import StorageConfig
from otel_margin.policy import parse_policy
from test_alerts_engine import NOW, PARAMETERS, PER_CUSTOMER, SPEND, seed, write_rules


class Receiver:
    """A webhook receiver answering each POST as scripted (then ``ok``); keeps what it accepted."""

    def __init__(self) -> None:
        self.script: deque[str] = deque()
        self.accepted: list[tuple[dict[str, str], Any]] = []
        self.requests = 0
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.requests += 1
                answer = receiver.script.popleft() if receiver.script else "ok"
                if answer == "timeout":
                    receiver.release.wait(5)  # past the client's timeout: it has given up
                    return
                status = 200 if answer == "ok" else int(answer)
                if status == 200:
                    receiver.accepted.append((dict(self.headers), payload))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    first, second = Receiver(), Receiver()
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def policy_text(json_url: str, slack_url: str) -> str:
    return f"""
[alerts]
cooldown_hours = 24

[[alerts.webhooks]]
name = "hook"
url = "{json_url}"
timeout_seconds = 0.3

[[alerts.webhooks]]
name = "slack"
url = "{slack_url}"
format = "slack"
timeout_seconds = 0.3

[alerts.runbook]
responder = "oncall@example.com"
responders = {{ search = "jane@example.com" }}
"""


def new_runner(chdb_path: str, database: str, rules: Path, policy: str, clock: list) -> AlertRunner:
    """An engine object as a freshly started watcher makes it: nothing carried over but the store."""
    return AlertRunner(StorageConfig(endpoint=f"chdb://{chdb_path}", database=database),
                       policy=lambda: parse_policy(policy), rules_dirs=[str(rules)], builtin=False,
                       parameters=lambda policy, **_: PARAMETERS, clock=lambda: clock[0], retries=1, backoff=0.01)


def test_failed_and_timed_out_webhooks_are_retried_at_the_next_run_and_nothing_is_sent_twice(
        chdb_client, chdb_path, database, tmp_path, receivers):
    hook, slack = receivers
    seed(chdb_client, database)
    rules = write_rules(tmp_path / "rules", {"spend.sql": SPEND, "per_customer.sql": PER_CUSTOMER})
    policy = policy_text(hook.url, slack.url)
    clock = [NOW]
    # Run 1: the JSON hook fails (a 500, then a timeout; then two 500s); Slack takes both alerts.
    hook.script.extend(["500", "timeout", "500", "500"])
    first = new_runner(chdb_path, database, rules, policy, clock).run_once()
    fired = {event.event_id for event, status in first.current if status == "new"}
    assert len(fired) == 2
    failed = [d for _, d in first.deliveries if not d.ok]
    assert {d.destination for d in failed} == {"hook"} and len(failed) == 2 and all(d.attempts == 2 for d in failed)
    assert sorted(d.error.split(": ", 1)[1].split(" (2 attempt(s))")[0] for d in failed) == [
        "HTTP 500 Internal Server Error, then HTTP 500 Internal Server Error",
        "HTTP 500 Internal Server Error, then no answer within 0.3 s"]
    assert all("'hook' (127.0.0.1)" in d.error and "sent again at the next run" in d.error for d in failed)
    assert "/hook" not in " ".join(d.error for d in failed)  # the URL (a secret, for Slack) is not printed
    assert hook.accepted == [] and {p["blocks"][-1]["elements"][0]["text"].split("event ")[1].split(" ")[0]
                                    for _, p in slack.accepted} == fired

    # Run 2, a restarted watcher an hour later: the breaches stand; only the undelivered is sent.
    clock[0] = NOW + timedelta(hours=1)
    second = new_runner(chdb_path, database, rules, policy, clock).run_once()
    assert {status for _, status in second.current} == {"standing"}
    assert sorted((d.destination, d.ok) for _, d in second.deliveries) == [("hook", True), ("hook", True)]
    assert {payload["event_id"] for _, payload in hook.accepted} == fired and len(hook.accepted) == 2
    stored = chdb_client.query(f"SELECT delivered, attempts, last_error FROM `{database}`.alert_events FINAL").result_rows
    assert all(set(delivered) == {"hook", "slack"} and attempts["hook"] == 3 and attempts["slack"] == 1
               and last_error == {} for delivered, attempts, last_error in stored)

    # Run 3, restarted again: nothing is due anywhere, nothing is sent.
    clock[0] = NOW + timedelta(hours=2)
    requests = hook.requests + slack.requests
    assert new_runner(chdb_path, database, rules, policy, clock).run_once().deliveries == ()
    assert hook.requests + slack.requests == requests and len(slack.accepted) == 2

    # After the cooldown the standing breaches are sent again, once each, to both.
    clock[0] = NOW + timedelta(hours=25)
    again = new_runner(chdb_path, database, rules, policy, clock).run_once()
    refired = {event.event_id for event, status in again.current if status == "new"}
    assert len(refired) == 2 and not refired & fired
    assert len(hook.accepted) == 4 and len(slack.accepted) == 4
    assert {payload["event_id"] for _, payload in hook.accepted[2:]} == refired


def test_the_payloads_name_feature_value_threshold_trend_driver_responder_and_response(
        chdb_client, chdb_path, database, tmp_path, receivers):
    hook, slack = receivers
    seed(chdb_client, database)
    rules = write_rules(tmp_path / "rules", {"spend.sql": SPEND})
    result = new_runner(chdb_path, database, rules, policy_text(hook.url, slack.url), [NOW]).run_once()
    ((event, _),) = result.current
    ((headers, payload),) = hook.accepted
    assert headers["Idempotency-Key"] == event.event_id == payload["event_id"]
    assert {key: payload[key] for key in ("rule", "severity", "zone", "feature", "customer", "threshold", "trend",
                                          "driver", "responder", "response", "details")} == {
        "rule": "spend", "severity": "red", "zone": "red", "feature": "search", "customer": "", "threshold": 1.0,
        "trend": "up", "driver": "model gpt-4o (the test)", "responder": "jane@example.com",
        "response": "act within 24 h", "details": {"calls": 2}}
    assert payload["value"] == pytest.approx(1.3) and payload["rule_fired_this_week"] == 1
    ((_, message),) = slack.accepted
    assert set(message) == {"text", "blocks"}
    for part in ("spend", "search", "1.3", "threshold of 1", "model gpt-4o (the test)", "jane@example.com",
                 "act within 24 h"):
        assert part in message["text"] or part in json.dumps(message["blocks"]), part
    assert all(block["type"] in ("section", "context") for block in message["blocks"])


def test_details_of_any_type_are_recorded_and_sent(chdb_client, chdb_path, database, tmp_path, receivers):
    hook, slack = receivers
    seed(chdb_client, database)
    odd = SPEND.replace("count() AS calls", "count() AS calls, toIPv4('10.0.0.1') AS ip, toUUID("
                        "'61f0c404-5cb3-11e7-907b-a6006ad3dba0') AS id, toDecimal64(1.5, 2) AS amount, "
                        "[toDate('2026-03-01')] AS days, map('a', 1) AS counts")
    rules = write_rules(tmp_path / "rules", {"spend.sql": odd})
    result = new_runner(chdb_path, database, rules, policy_text(hook.url, slack.url), [NOW]).run_once()
    assert all(delivery.ok for _, delivery in result.deliveries) and len(result.deliveries) == 2
    ((_, payload),) = hook.accepted
    assert payload["details"] == {"calls": 2, "ip": "10.0.0.1", "id": "61f0c404-5cb3-11e7-907b-a6006ad3dba0",
                                  "amount": "1.50", "days": ["2026-03-01"], "counts": {"a": 1}}


def test_alerts_test_says_which_destination_took_the_sample(tmp_path, receivers, capsys):
    import socket

    from otel_margin.cli import main

    hook, _ = receivers
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}/x"
    policy = tmp_path / "otel-margin.toml"
    policy.write_text(policy_text(hook.url, dead), "utf-8")
    assert main(["alerts", "test", "--policy", str(policy)]) == 1
    out = capsys.readouterr().out
    assert "ok      hook (json)" in out and "FAILED  slack (slack): webhook 'slack' (127.0.0.1)" in out
    ((_, payload),) = hook.accepted
    assert payload["rule"] == "otel_margin_test" and payload["responder"] == "oncall@example.com"
    policy.write_text("", "utf-8")
    assert main(["alerts", "test", "--policy", str(policy)]) == 1
    assert "no destinations to test" in capsys.readouterr().err


def test_the_watcher_survives_failed_runs_and_stops_cleanly_on_sigterm(tmp_path):
    """A broken policy file fails runs without stopping the watcher; once fixed, runs go on; SIGTERM ends it, 0."""
    policy = tmp_path / "otel-margin.toml"
    policy.write_text("[alerts]\ncooldown_hours = -1\n", "utf-8")
    env = {**os.environ, "OTEL_EXPORTER_CLICKHOUSE_ENDPOINT": f"chdb://{tmp_path / 'chdb'}",
           "OTEL_EXPORTER_CLICKHOUSE_SPOOL_DIR": str(tmp_path / "spool"), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "otel_margin.cli", "alerts", "run", "--watch", "--interval", "0.2", "--no-builtin",
         "--policy", str(policy)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        failures = [process.stderr.readline() for _ in range(2)]
        assert all("this run failed, the next one is in 0.2 s" in line and "cooldown_hours = -1" in line
                   for line in failures), failures
        policy.write_text("[alerts]\ncooldown_hours = 2\n", "utf-8")  # read again at the next run
        assert process.stdout.readline().startswith("No data yet")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_alerts_settings_of_the_policy_file(tmp_path):
    from datetime import timedelta as hours_of

    from otel_margin.analysis.alerts.settings import DEFAULT_RESPONDER, alert_settings
    from otel_margin.policy import PolicyError

    policy = parse_policy("""
[alerts]
cooldown_hours = { default = 12, spend = 1.5 }
rules_dir = "mine"

[[alerts.webhooks]]
name = "a"
url = "https://x.example/h"

[alerts.runbook]
responders = { search = "jane" }
red = "now"
""", source=str(tmp_path / "otel-margin.toml"))
    settings = alert_settings(policy)
    assert settings.cooldown_for("spend") == hours_of(hours=1.5) and settings.cooldown_for("other") == hours_of(hours=12)
    assert settings.rules_dir == tmp_path / "mine"  # beside the policy file
    (webhook,) = settings.webhooks
    assert (webhook.name, webhook.format, webhook.timeout_seconds) == ("a", "json", 5.0)
    assert settings.runbook.responder_for("search") == "jane" and settings.runbook.responder_for("x") == DEFAULT_RESPONDER
    assert settings.runbook.response_for("red") == "now" and settings.runbook.response_for("yellow") == "investigate within 48 h"
    assert alert_settings(parse_policy("")).cooldown_for("x") == hours_of(hours=24)

    with pytest.raises(PolicyError) as error:
        parse_policy('[alerts]\ncooldown_hours = 0\n[[alerts.webhooks]]\nname = "a"\nurl = "hooks.slack.com/x"\n'
                     'format = "teams"\n')
    assert [line.split(":")[0] for line in error.value.errors] == ["otel-margin.toml line 2", "otel-margin.toml line 5",
                                                                  "otel-margin.toml line 6"]
    assert "cooldown_hours = 0 is not valid; expected hours greater than 0" in error.value.errors[0]
    assert 'expected an http(s) URL like "https://' in error.value.errors[1] and '"slack"' in error.value.errors[2]
    twice = parse_policy('[[alerts.webhooks]]\nname = "a"\nurl = "https://x.example"\n'
                         '[[alerts.webhooks]]\nname = "a"\nurl = "https://y.example"\n')
    with pytest.raises(PolicyError, match="entries 1 and 2 are both named 'a'; give each destination its own name"):
        alert_settings(twice)


@settings(max_examples=200, deadline=None)
@given(feature=st.text(max_size=40), driver=st.text(max_size=60), customer=st.text(max_size=20))
@example(feature="&lt;b&gt; &amp; co", driver="<!channel> & more", customer="")
def test_a_slack_message_escapes_names_and_keeps_them(feature, driver, customer):
    import html
    from dataclasses import replace

    from otel_margin.analysis.alerts.delivery import alert_fields, sample_event, slack_message
    from otel_margin.analysis.alerts.settings import Runbook

    event = replace(sample_event(), feature=feature, driver=driver, customer=customer)
    message = slack_message(alert_fields(event, Runbook(responder="<@U123>")))
    text = json.dumps(message, ensure_ascii=False)
    assert "<" not in text and ">" not in text  # Slack would read them as links and mentions
    assert feature in html.unescape(message["text"]) and driver in html.unescape(message["text"])
    assert "<@U123>" in html.unescape(message["blocks"][1]["text"]["text"])
