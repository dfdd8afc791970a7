"""The alert engine on real chDB: rule files, their checks, the history and its cooldown.

Rule files are written here, in tmp directories (the built-in rules are the content's own tests);
the parameters rules bind are a stub dict, as the thresholds module would give them.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chdb_fixtures import call, chdb_client, chdb_path, database, insert_calls  # noqa: F401 - fixtures
from otel_margin.analysis.alerts import events
from otel_margin.analysis.alerts.engine import Alert, Evaluation, evaluate
from otel_margin.analysis.alerts.rules import COLUMNS, load_rules, rule_from_text
from otel_margin.analysis.alerts.runner import AlertRunner
from otel_margin.exporters.storage import StorageConfig
from otel_margin.policy import parse_policy

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
PARAMETERS = {"limit_usd": 1.0, "who": "the test", "unused": 3}

SPEND = """
-- the features whose calls cost more than a limit, with the model that cost most as the driver
SELECT 'spend' AS rule, 'red' AS severity, feature, '' AS customer,
       toFloat64(sum(cost_usd)) AS value, {limit_usd:Float64} AS threshold, 'up' AS trend,
       concat('model ', argMax(response_model, cost_usd), ' (', {who:String}, ')') AS driver,
       count() AS calls
FROM $database.llm_calls
GROUP BY feature
HAVING value > {limit_usd:Float64}
ORDER BY feature;
"""
PER_CUSTOMER = """
SELECT 'customer_spend' AS rule, 'yellow' AS severity, feature, customer,
       toFloat64(sum(cost_usd)) AS value, toFloat64(0.5) AS threshold, '' AS trend, 'calls' AS driver
FROM $database.llm_calls GROUP BY feature, customer HAVING value > 0.5 ORDER BY feature, customer
"""
BROKEN = {
    "syntax.sql": ("SELEC 'x' AS rule FROM $database.llm_calls", "ClickHouse cannot run it"),
    "no_driver.sql": ("SELECT 'x' AS rule, 'red' AS severity, '' AS feature, '' AS customer, 1.0 AS value, "
                      "1.0 AS threshold, '' AS trend", "missing column 'driver'"),
    "no_driver_no_rows.sql": ("SELECT 'x' AS rule, 'red' AS severity, '' AS feature, '' AS customer, 1.0 AS value, "
                              "1.0 AS threshold, '' AS trend WHERE 0", "missing column 'driver'"),
    "unknown_parameter.sql": ("SELECT 'x' AS rule, 'red' AS severity, '' AS feature, '' AS customer, "
                              "{limit_usdd:Float64} AS value, 1.0 AS threshold, '' AS trend, '' AS driver",
                              "unknown parameter {limit_usdd:"),
    "text_value.sql": ("SELECT 'x' AS rule, 'red' AS severity, '' AS feature, '' AS customer, 'high' AS value, "
                       "1.0 AS threshold, '' AS trend, '' AS driver", "column 'value' is String"),
    "orange.sql": ("SELECT 'x' AS rule, 'orange' AS severity, '' AS feature, '' AS customer, 1.0 AS value, "
                   "1.0 AS threshold, '' AS trend, '' AS driver", "severity 'orange'"),
    "missing_table.sql": ("SELECT * FROM $database.no_such_table", "UNKNOWN_TABLE"),
}


def write_rules(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql, "utf-8")
    return directory


def seed(client: Any, db: str) -> None:
    insert_calls(client, db, [
        call(timestamp=NOW, feature="search", customer="acme", cost_usd=Decimal("0.9"), response_model="gpt-4o"),
        call(timestamp=NOW, feature="search", customer="bolt", cost_usd=Decimal("0.4"), response_model="gpt-4o-mini"),
        call(timestamp=NOW, feature="chat", customer="acme", cost_usd=Decimal("0.2")),
    ])


def test_a_broken_rule_file_is_named_with_the_fix_and_the_others_still_run(chdb_client, database, tmp_path):
    seed(chdb_client, database)
    directory = write_rules(tmp_path / "rules", {"spend.sql": SPEND, "per_customer.sql": PER_CUSTOMER,
                                                 **{name: sql for name, (sql, _) in BROKEN.items()}})
    rules, failures = load_rules([directory], builtin=False)
    result = evaluate(chdb_client, rules, PARAMETERS, database=database, failures=failures)

    assert [(a.rule, a.feature, a.customer) for a in result.alerts] == [
        ("customer_spend", "search", "acme"), ("spend", "search", "")]
    spend = result.alerts[1]
    assert spend.value == pytest.approx(1.3) and spend.threshold == 1.0 and spend.severity == "red"
    assert spend.driver == "model gpt-4o (the test)" and spend.details == {"calls": 2} and spend.source == "spend"
    messages = {failure.name: failure.message for failure in result.failures}
    assert set(messages) == {Path(name).stem for name in BROKEN}
    for name, (_, what) in BROKEN.items():
        message = messages[Path(name).stem]
        assert message.startswith(f"{directory / name}: ") and what in message, message
    # Each says what to do.
    assert "every rule returns rule String, severity String" in messages["no_driver"]
    assert "... AS driver" in messages["no_driver"]
    assert "toFloat64(...) AS value" in messages["text_value"]
    assert "'info', 'yellow', 'red'" in messages["orange"]
    assert "limit_usd" in messages["unknown_parameter"] and "fix" not in messages["unknown_parameter"][:10]
    assert "fix the SQL" in messages["syntax"]
    assert result.ran == {"spend", "per_customer"}


def test_a_rule_is_given_only_the_parameters_it_names(chdb_client, database, tmp_path):
    """ClickHouse refuses nothing about extra parameters, so the check is on what was passed."""
    seen: list[dict] = []

    class Recording:
        def query(self, sql, parameters=None):
            seen.append(dict(parameters or {}))
            return chdb_client.query(sql, parameters=parameters)

    seed(chdb_client, database)
    rules, _ = load_rules([write_rules(tmp_path / "r", {"spend.sql": SPEND})], builtin=False)
    evaluate(Recording(), rules, PARAMETERS, database=database)
    assert seen == [{"limit_usd": 1.0, "who": "the test"}]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80), st.text(alphabet="abcdefghij_", min_size=1, max_size=10))
def test_parameters_are_found_wherever_they_are_and_not_in_comments(noise: str, name: str):
    sql = f"SELECT {{{name}:Float64}} AS v -- {{{name}x:String}} {noise.replace(chr(10), ' ')}\n"
    if "{" in noise:
        return  # a brace in the noise may itself read as a parameter
    assert rule_from_text("r", "r.sql", sql).parameters == (name,)


def test_a_users_file_replaces_the_builtin_of_the_same_name_and_a_missing_directory_is_named(tmp_path):
    from otel_margin.analysis.alerts.rules import BUILTIN_RULES_DIR

    builtins = sorted(entry.name for entry in BUILTIN_RULES_DIR.iterdir() if entry.name.endswith(".sql")) \
        if BUILTIN_RULES_DIR.is_dir() else []
    own = write_rules(tmp_path / "mine", {"extra.sql": SPEND, "empty.sql": "-- nothing yet\n"})
    if builtins:
        (own / builtins[0]).write_text(SPEND, "utf-8")
    rules, failures = load_rules([own, tmp_path / "absent"])
    by_name = {rule.name: rule for rule in rules}
    assert "extra" in by_name and by_name["extra"].label == str(own / "extra.sql")
    if builtins:
        replaced = by_name[builtins[0][:-4]]
        assert replaced.label == str(own / builtins[0]) and replaced.sql == SPEND
        assert all(by_name[name[:-4]].label == f"rules/{name}" for name in builtins[1:])
    messages = [failure.message for failure in failures]
    assert any(m.startswith(f"{own / 'empty.sql'}: is empty; write one SELECT returning rule String") for m in messages)
    assert any(m.startswith(f"{tmp_path / 'absent'}: no such rules directory") and "--rules" in m for m in messages)


# --- the history: deduplication and cooldown, as a property ----------------------------------------

RANK = ["info", "yellow", "red"]
KEYS = [("r1", "search", ""), ("r1", "chat", ""), ("r2", "search", "acme")]
COOLDOWN = timedelta(hours=24)


def alert(key: tuple[str, str, str], severity: str = "yellow") -> Alert:
    rule, feature, customer = key
    return Alert(rule, severity, feature, customer, 1.0, 2.0, "down", "d", source=rule)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(
    st.integers(min_value=0, max_value=30),  # hours since the previous run
    st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(["info", "yellow", "red"])), max_size=3, unique_by=lambda x: x[0]),
    st.sets(st.sampled_from(["r1", "r2"])),  # rules that failed this run
), min_size=1, max_size=12))
@example([(0, [(KEYS[0], "yellow")], set()), (1, [(KEYS[0], "info")], set()), (1, [(KEYS[0], "yellow")], set())])
@example([(0, [(KEYS[0], "red")], set()), (1, [], {"r1"}), (1, [], set())])
@example([(0, [(KEYS[0], "yellow")], set()), (1, [(KEYS[0], "red")], set())])
def test_a_standing_breach_is_sent_once_per_cooldown_unless_it_gets_worse(runs):
    history: list[events.Event] = []
    now = NOW
    fired: dict[tuple, list[tuple[datetime, str]]] = {}
    peak: dict[tuple, str] = {}
    for hours, found, failed in runs:
        now += timedelta(hours=hours)
        found = [(key, severity) for key, severity in found if key[0] not in failed]
        evaluation = Evaluation(tuple(alert(k, s) for k, s in found), (), frozenset({"r1", "r2"} - failed))
        result = events.reconcile(history, evaluation, now=now, cooldown_for=lambda rule: COOLDOWN,
                                  destinations=["hook"])
        assert [(e.key, e.severity) for e, _ in result.current] == [(k, s) for k, s in found]
        for event, status in result.current:
            previous = fired.get(event.key, [])
            if status == "new":
                assert event.fired_at == now and event.due == ("hook",)
                if previous:  # fired again: the cooldown passed, or the severity rose
                    last_at, _ = previous[-1]
                    assert now - last_at >= COOLDOWN or RANK.index(event.severity) > RANK.index(peak[event.key])
                fired.setdefault(event.key, []).append((now, event.severity))
                peak[event.key] = event.severity
            else:  # standing: within the cooldown, and no worse than what was sent or seen since
                assert previous and now - previous[-1][0] < COOLDOWN and event.last_seen == now
                assert RANK.index(event.severity) <= RANK.index(peak[event.key])
                peak[event.key] = max(peak[event.key], event.severity, key=RANK.index)
        live_before = {e.key for e in history if e.closed_at is None}
        history = events.merge(history, result.changed)
        # One live row per key standing now; a key its rule ran without is closed; a failed rule closes nothing.
        live = {e.key for e in history if e.closed_at is None}
        assert live == {k for k, _ in found} | {key for key in live_before if key[0] in failed}
        assert len([e for e in history if e.closed_at is None]) == len(live)
    # Every key that ever breached fired at least once.
    assert set(fired) == {k for _, found, failed in runs for k, _ in found if k[0] not in failed}


# --- on the store: the table, a restart, the weekly count -----------------------------------------


def runner(chdb_path: str, database: str, rules: Path, clock: list[datetime], policy: str = "") -> AlertRunner:
    config = StorageConfig(endpoint=f"chdb://{chdb_path}", database=database)
    return AlertRunner(config, policy=lambda: parse_policy(policy), rules_dirs=[str(rules)], builtin=False,
                       parameters=lambda policy, **_: PARAMETERS, clock=lambda: clock[0])


def test_history_survives_a_restart_and_counts_each_rules_alerts_per_week(chdb_client, chdb_path, database, tmp_path):
    seed(chdb_client, database)
    rules = write_rules(tmp_path / "rules", {"spend.sql": SPEND, "per_customer.sql": PER_CUSTOMER})
    clock = [NOW]
    first = runner(chdb_path, database, rules, clock, "[alerts]\ncooldown_hours = { default = 24, spend = 6 }\n")
    result = first.run_once()
    assert {(e.rule, e.feature, e.customer, status) for e, status in result.current} == {
        ("spend", "search", "", "new"), ("customer_spend", "search", "acme", "new")}
    stored = chdb_client.query(f"SELECT rule, feature, customer, value, first_seen, details FROM `{database}`.alert_events "
                               "FINAL ORDER BY rule").result_rows
    assert [row[:3] for row in stored] == [("customer_spend", "search", "acme"), ("spend", "search", "")]
    assert json.loads(stored[1][5]) == {"calls": 2}

    clock[0] = NOW + timedelta(hours=5)  # a new engine object over the same store: a restarted watcher
    again = runner(chdb_path, database, rules, clock, "[alerts]\ncooldown_hours = { default = 24, spend = 6 }\n")
    assert {status for _, status in again.run_once().current} == {"standing"}

    clock[0] = NOW + timedelta(hours=7)  # spend's own cooldown (6 h) passed; the default (24 h) did not
    result = runner(chdb_path, database, rules, clock, "[alerts]\ncooldown_hours = { default = 24, spend = 6 }\n").run_once()
    assert {(e.rule, status) for e, status in result.current} == {("spend", "new"), ("customer_spend", "standing")}
    spend = next(e for e, _ in result.current if e.rule == "spend")
    assert spend.first_seen == NOW and spend.fired_at == clock[0]  # the breach stands since the first run
    assert result.weekly == {"spend": 2, "customer_spend": 1}
    rows = chdb_client.query(f"SELECT rule, count(), countIf(closed_at IS NULL) FROM `{database}`.alert_events FINAL "
                             "GROUP BY rule ORDER BY rule").result_rows
    assert rows == [("customer_spend", 1, 1), ("spend", 2, 1)]

    # The breach ends: its row is closed, and a later breach is a new one.
    chdb_client.command(f"TRUNCATE TABLE `{database}`.llm_calls")
    clock[0] = NOW + timedelta(hours=8)
    assert runner(chdb_path, database, rules, clock).run_once().current == ()
    assert chdb_client.command(f"SELECT countIf(closed_at IS NULL) FROM `{database}`.alert_events FINAL") == 0


def test_the_table_is_created_once_and_on_a_cluster_as_the_schema_is(chdb_client, database):
    events.ensure_table(chdb_client, database=database)
    events.ensure_table(chdb_client, database=database)  # idempotent
    names = [name for name, _ in COLUMNS]
    columns = [row[0] for row in chdb_client.query(f"DESCRIBE TABLE `{database}`.alert_events").result_rows]
    assert set(names) <= set(columns) and {"first_seen", "last_seen", "delivered"} <= set(columns)
    local, distributed = events.table_statements(database="m", cluster="prod")
    assert "`m`.alert_events_local ON CLUSTER `prod`" in local and "ReplicatedReplacingMergeTree(version)" in local
    assert "ENGINE = Distributed(`prod`, `m`, `alert_events_local`, cityHash64(rule, feature, customer))" in distributed
    (single,) = events.table_statements(database="m")
    assert "ON CLUSTER" not in single and "ENGINE = ReplacingMergeTree(version)" in single


def test_alerts_run_prints_a_json_array_and_fails_when_a_rule_fails(chdb_client, chdb_path, database, tmp_path,
                                                                   monkeypatch, capsys):
    from otel_margin.cli import main

    seed(chdb_client, database)
    rules = write_rules(tmp_path / "rules", {"spend.sql": SPEND.replace("{who:String}", "'x'").replace(
        "{limit_usd:Float64}", "1.0"), "no_driver.sql": BROKEN["no_driver.sql"][0]})
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")
    policy = tmp_path / "otel-margin.toml"
    policy.write_text('[alerts.runbook]\nresponder = "oncall"\nresponders = { search = "jane" }\n', "utf-8")
    argv = ["alerts", "run", "--no-builtin", "--rules", str(rules), "--database", database, "--policy", str(policy)]
    assert main([*argv, "--format", "json"]) == 1
    captured = capsys.readouterr()
    (row,) = json.loads(captured.out)
    assert row["rule"] == "spend" and row["feature"] == "search" and row["customer"] == ""
    assert row["severity"] == "red" and row["zone"] == "red" and row["status"] == "new"
    assert row["value"] == pytest.approx(1.3) and row["threshold"] == 1.0 and row["trend"] == "up"
    assert row["driver"] == "model gpt-4o (x)" and row["details"] == {"calls": 2}
    assert row["responder"] == "jane" and row["response"] == "act within 24 h" and row["rule_fired_this_week"] == 1
    assert set(row) >= {"first_seen", "last_seen", "fired_at", "event_id"}
    assert f"{rules / 'no_driver.sql'}: missing column 'driver'" in captured.err

    monkeypatch.setenv("COLUMNS", "250")
    assert main(argv) == 1  # the table: the same alert, now standing
    out = capsys.readouterr().out
    assert "standing" in out and "search" in out and "jane" in out and "act within 24 h" in out


def test_alert_fatigue_is_said_in_the_output(chdb_client, chdb_path, database, tmp_path, monkeypatch, capsys):
    from otel_margin.cli import main

    seed(chdb_client, database)
    rules = write_rules(tmp_path / "rules", {"per_customer.sql": PER_CUSTOMER})
    policy = tmp_path / "p.toml"
    policy.write_text("[alerts]\ncooldown_hours = 1\n", "utf-8")
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")
    config = StorageConfig(endpoint=f"chdb://{chdb_path}", database=database)
    for hours in (0, 2, 4):  # three firings, each after the cooldown; the command is the fourth in the week
        AlertRunner(config, policy=lambda: parse_policy(policy.read_text()), rules_dirs=[str(rules)], builtin=False,
                    clock=lambda hours=hours: datetime.now(timezone.utc) - timedelta(hours=8 - hours)).run_once()
    assert main(["alerts", "run", "--no-builtin", "--rules", str(rules), "--database", database,
                 "--policy", str(policy), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)[0]["rule_fired_this_week"] == 4
    assert "alert fatigue: rule 'customer_spend' fired 4 times in the last 7 days" in captured.err
    assert "thresholds are wrong" in captured.err


def test_alerts_run_without_data_creates_nothing(chdb_client, chdb_path, tmp_path, monkeypatch, capsys):
    from otel_margin.cli import main

    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")
    rules = write_rules(tmp_path / "rules", {"spend.sql": SPEND})
    assert main(["alerts", "run", "--no-builtin", "--rules", str(rules), "--database", "alerts_nothing_here",
                 "--policy", str(tmp_path / "none.toml")]) == 1  # the policy file does not exist
    assert "no such policy file" in capsys.readouterr().err
    assert main(["alerts", "run", "--no-builtin", "--rules", str(rules), "--database", "alerts_nothing_here"]) == 0
    assert capsys.readouterr().out.startswith("No data yet")
    assert chdb_client.command("SELECT count() FROM system.databases WHERE name = 'alerts_nothing_here'") == 0


def test_the_weekly_count_is_of_the_seven_days_up_to_now():
    history: list[events.Event] = []
    for days_ago in (8, 6, 3, 0):
        result = events.reconcile(history, Evaluation((alert(KEYS[0]), alert(KEYS[2])), (), frozenset({"r1", "r2"})),
                                  now=NOW - timedelta(days=days_ago), cooldown_for=lambda rule: COOLDOWN, destinations=[])
        history = events.merge(history, result.changed)
    assert len(history) == 8
    assert events.weekly_counts(history, now=NOW) == {"r1": 3, "r2": 3}
    assert events.weekly_counts(history, now=NOW + timedelta(days=1)) == {"r1": 2, "r2": 2}  # 6 days ago left the week


def test_alerts_run_on_a_clickhouse_server_over_http(tmp_path_factory, tmp_path):
    """The same engine through clickhouse-connect's HTTP transport (the loopback server: chDB behind ClickHouse's
    HTTP interface, in its own process; or OTEL_MARGIN_TEST_CLICKHOUSE_URL)."""
    import os
    import uuid

    from clickhouse_http import LoopbackClickHouse, RealClickHouse
    from otel_margin import schema
    from otel_margin.exporters.storage import session

    url = os.environ.get("OTEL_MARGIN_TEST_CLICKHOUSE_URL")
    server = RealClickHouse(url) if url else LoopbackClickHouse(tmp_path_factory.mktemp("alerts-http"))
    try:
        config = StorageConfig(endpoint=server.url, database=f"alerts_{uuid.uuid4().hex[:8]}")
        with session(config) as client:
            schema.apply_schema(client, database=config.database, ttl_days=0)
            seed(client, config.database)
        rules = write_rules(tmp_path / "rules", {"spend.sql": SPEND, "per_customer.sql": PER_CUSTOMER,
                                                 "no_driver_no_rows.sql": BROKEN["no_driver_no_rows.sql"][0]})
        clock = [NOW]
        make = lambda: AlertRunner(config, policy=lambda: parse_policy(""), rules_dirs=[str(rules)], builtin=False,  # noqa: E731
                                   parameters=lambda policy, **_: PARAMETERS, clock=lambda: clock[0])
        first = make().run_once()
        assert sorted((e.rule, status) for e, status in first.current) == [("customer_spend", "new"), ("spend", "new")]
        assert [f.name for f in first.failures] == ["no_driver_no_rows"]
        clock[0] = NOW + timedelta(hours=1)
        assert {status for _, status in make().run_once().current} == {"standing"}
        with session(config) as client:
            assert client.command(f"SELECT count() FROM `{config.database}`.alert_events FINAL") == 2
            client.command(f"DROP DATABASE `{config.database}`")
    finally:
        server.stop()


def test_a_history_table_that_cannot_be_used_is_an_error_naming_it(chdb_client, chdb_path, database, tmp_path,
                                                                  monkeypatch, capsys):
    from otel_margin.cli import main

    seed(chdb_client, database)
    chdb_client.command(f"CREATE TABLE `{database}`.alert_events (x Int8) ENGINE = Memory")  # someone else's table
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{chdb_path}")
    rules = write_rules(tmp_path / "rules", {"per_customer.sql": PER_CUSTOMER})
    assert main(["alerts", "run", "--no-builtin", "--rules", str(rules), "--database", database]) == 1
    err = capsys.readouterr().err
    assert f"cannot read the alerts' history {database}.alert_events" in err and "Traceback" not in err
    assert "alert_events_table.sql" in err


def test_a_watcher_says_a_rules_fatigue_once_per_count(capsys):
    import argparse

    from otel_margin.analysis.alerts.runner import RunResult
    from otel_margin.cli.alerts import _print_result

    args, config = argparse.Namespace(format="json"), StorageConfig()
    told: dict[str, int] = {}
    for weekly, said in (({"r1": 5, "r2": 1}, ["r1"]), ({"r1": 5, "r2": 1}, []), ({"r1": 6, "r2": 4}, ["r1", "r2"])):
        assert _print_result(RunResult(weekly=weekly), args, config, watching=True, fatigue_told=told) == 0
        err = capsys.readouterr().err
        assert [line.split("'")[1] for line in err.splitlines() if "alert fatigue" in line] == said
    _print_result(RunResult(weekly={"r1": 6}), args, config, watching=False)  # a single run always says it
    assert "alert fatigue: rule 'r1' fired 6 times" in capsys.readouterr().err
