"""Failed calls, the report's figures, and the CLI basics (issue 14, item 5).

Failed calls go through the real SDKs to the local stand-in (429 and 500 answers), into
chDB through the real exporter, and out through ``otel-margin report``.
"""

from __future__ import annotations

import os

import json
import re
from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_margin import attribute
from otel_margin import attributes as a
from otel_margin.cli import main
from otel_margin.exporters.clickhouse import ClickHouseSpanExporter
from otel_margin.standin import anthropic_client, openai_client

from conftest import instrumentation

MESSAGES = [{"role": "user", "content": "Summarize the quarter in one line."}]
SCENARIO = "x-standin-scenario"


def _workload(server: Any) -> None:
    """One good call and two failed ones, all for the same feature and customer, with usage revenue."""
    oai, ant = openai_client(server), anthropic_client(server)
    with attribute(feature="summarize", customer="acme", tier="pro", revenue_usd="0.05"):
        oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError):
            oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers={SCENARIO: "error-429"})
        with pytest.raises(anthropic.InternalServerError):
            ant.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES,
                                extra_headers={SCENARIO: "error-500"})


def _store(spans: list[Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spans into a fresh embedded chDB through the real exporter; the CLI reads it."""
    endpoint, spool = f"chdb://{tmp_path / 'chdb'}", str(tmp_path / "spool")
    exporter = ClickHouseSpanExporter(endpoint=endpoint, spool_dir=spool, drain_interval=0.1)
    exporter.export(spans)
    exporter.shutdown()
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_SPOOL_DIR", spool)


def test_a_failed_call_is_an_error_with_no_cost_and_no_usage_revenue(
        standin_server, instrumented, sink, tmp_path, monkeypatch, capsys) -> None:
    _workload(standin_server)
    spans = sink.llm_spans()
    failed = [span.attributes for span in spans if a.ERROR_TYPE in span.attributes]
    (good,) = [span.attributes for span in spans if a.ERROR_TYPE not in span.attributes]
    assert sorted(attributes[a.ERROR_TYPE] for attributes in failed) == ["InternalServerError", "RateLimitError"]
    for attributes in failed:
        assert attributes[a.MARGIN_COST_STATUS] == "error"
        assert a.MARGIN_COST_USD not in attributes and a.MARGIN_REVENUE_USD not in attributes
    assert good[a.MARGIN_COST_STATUS] == "priced" and good[a.MARGIN_REVENUE_USD] == "0.05"
    good_cost = Decimal(good[a.MARGIN_COST_USD])

    _store(spans, tmp_path, monkeypatch)
    assert main(["report", "--since", "1", "--format", "json"]) == 0
    (total,) = json.loads(capsys.readouterr().out)["total"]
    assert (total["calls"], total["error_calls"], total["unpriced_calls"]) == (3, 2, 0)
    assert Decimal(total["revenue_usd"]) == Decimal("0.05") and Decimal(total["cost_usd"]) == good_cost
    assert main(["report", "--since", "1"]) == 0
    out = capsys.readouterr().out
    assert "errors" in out and "Add their models" not in out and "Errors are failed calls" in out


def test_a_failed_call_books_no_unit_revenue_from_the_policy(standin_server, otel, tmp_path, monkeypatch) -> None:
    policy = tmp_path / "otel-margin.toml"
    policy.write_text('[features.summarize]\nunit_price_usd = "0.02"\n')
    monkeypatch.setenv("OTEL_MARGIN_POLICY", str(policy))
    otel.clear()
    with instrumentation(otel):
        oai = openai_client(standin_server)
        with attribute(feature="summarize"):
            oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            with pytest.raises(openai.InternalServerError):
                oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                            extra_headers={SCENARIO: "error-500"})
        spans = otel.llm_spans()
    revenue = {span.attributes.get(a.ERROR_TYPE, ""): span.attributes.get(a.MARGIN_REVENUE_USD) for span in spans}
    assert revenue == {"": "0.02", "InternalServerError": None}


def test_a_stream_cut_mid_way_keeps_the_cost_of_what_it_used_and_books_no_usage_revenue(
        standin_server, instrumented, sink) -> None:
    oai = openai_client(standin_server)
    with attribute(feature="summarize", revenue_usd="0.05"), pytest.raises(Exception):  # the SDK's own error
        for _chunk in oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                  extra_headers={SCENARIO: "cut-stream"}):
            pass
    (span,) = sink.llm_spans()
    attributes = span.attributes
    assert a.ERROR_TYPE in attributes and a.MARGIN_REVENUE_USD not in attributes
    # The provider produced tokens before the cut: estimated, and priced.
    assert attributes[a.MARGIN_USAGE_SOURCE] == "estimated" and attributes[a.MARGIN_COST_STATUS] == "estimated"
    assert Decimal(attributes[a.MARGIN_COST_USD]) > 0


# --- the report's figures ---------------------------------------------------------------------


def test_a_small_workload_reads_in_significant_digits_never_minus_zero(
        standin_server, instrumented, sink, tmp_path, monkeypatch, capsys) -> None:
    oai = openai_client(standin_server)
    with attribute(feature="search", customer="acme", revenue_usd="0.000001"):
        oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                    extra_headers={"x-standin-output-tokens": "5"})
    (span,) = sink.llm_spans()
    cost = Decimal(span.attributes[a.MARGIN_COST_USD])
    assert Decimal("0.000001") < cost < Decimal("0.001")  # a short call: far below a cent, above its revenue
    _store([span], tmp_path, monkeypatch)
    monkeypatch.delenv("COLUMNS", raising=False)
    assert main(["report", "--since", "1"]) == 0
    out = capsys.readouterr().out
    total_line = [line for line in out.splitlines() if "│ all" in line][0]  # the Total table (the waterfall's next)
    cells = [cell.strip() for cell in total_line.strip("│ ").split("│")]
    revenue, cost_text, margin_text = (Decimal(cell.replace(",", "")) for cell in cells[4:7])
    assert (revenue, cost_text) == (Decimal("0.000001"), _three_significant(cost))
    assert margin_text == _three_significant(Decimal("0.000001") - cost) and margin_text < 0
    assert not re.search(r"(?<![\d.])-0\.0+(?![\d])", out)


def _three_significant(value: Decimal) -> Decimal:
    return Decimal(f"{value:.3g}")


@given(st.decimals(min_value=Decimal("-1e20"), max_value=Decimal("1e20"), places=12, allow_nan=False))
def test_money_text_keeps_three_significant_digits_and_never_reads_minus_zero(value: Decimal) -> None:
    from otel_margin.cli.report import usd_text as _usd

    text = _usd(value)
    shown = Decimal(text.replace(",", ""))
    assert not re.fullmatch(r"-0\.?0*", text)
    if value == 0:
        assert text == "0.00"
    elif abs(value) >= 1:
        assert abs(shown - value) <= Decimal("0.005")
    else:
        assert shown != 0 and (shown < 0) == (value < 0)
        assert abs(shown - value) <= abs(value) * Decimal("0.005") + Decimal("5e-13")


# --- the CLI basics ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["report"], ["schema", "apply"]])
@pytest.mark.parametrize("endpoint", ["htp://clickhouse:8123", "chdb://", "clickhouse:8123"])
def test_an_explicit_bad_endpoint_stops_a_command_naming_the_variable(
        command, endpoint, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # the default store would be ./.otel-margin: it must stay unmade
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", endpoint)
    assert main(command) == 1
    err = capsys.readouterr().err
    assert f"OTEL_EXPORTER_CLICKHOUSE_ENDPOINT={endpoint!r}" in err and "chdb:///" in err and "unset it" in err
    assert not (tmp_path / ".otel-margin").exists()


def test_the_demo_starts_clean_unless_kept_and_says_where_it_writes(tmp_path, monkeypatch, capsys) -> None:
    from otel_margin.analysis import margin
    from otel_margin.cli.demo import DEMO_DATABASE
    from otel_margin.exporters.storage import StorageConfig, session

    monkeypatch.chdir(tmp_path)
    for variable in ("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", "OTEL_EXPORTER_CLICKHOUSE_DATABASE",
                     "OTEL_EXPORTER_CLICKHOUSE_SPOOL_DIR", "OTEL_MARGIN_POLICY"):
        monkeypatch.delenv(variable, raising=False)
    config = StorageConfig(endpoint="chdb://./.otel-margin/chdb", database=DEMO_DATABASE,
                           spool_dir=str(tmp_path / "unused-spool"))

    def run(*extra: str) -> tuple[str, Any]:
        assert main(["demo", "--calls", "12", *extra]) == 0
        # The demo's policy file was for the demo alone: nothing after it reads it (or its absence).
        assert "OTEL_MARGIN_POLICY" not in os.environ
        out = capsys.readouterr().out
        with session(config) as client:
            (total,) = margin.margin_by(client, "all", start=_today(), end=_today(), database=DEMO_DATABASE)
        return out, total

    first_out, first = run()
    assert str(tmp_path / ".otel-margin" / "chdb") in "".join(first_out.split()) and DEMO_DATABASE in first_out
    second_out, second = run()
    # The same seeded workload: the same store, not twice its calls (12 requests; a ticket takes 1-3 calls).
    assert first.calls >= 12 and second == first
    _, kept = run("--keep")
    # Kept: the calls add up; the day's revenue and fixed costs are imported again, idempotently.
    assert kept.calls == 2 * first.calls and kept.inference_usd == 2 * first.inference_usd
    assert (kept.infrastructure_usd, kept.support_usd) == (first.infrastructure_usd, first.support_usd)


def _today():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).date()


def test_version_prints_the_installed_version(capsys) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"otel-margin {version('otel-margin')}"


def test_the_otlp_extra_makes_the_otlp_exporter_start(tmp_path) -> None:
    import os
    import subprocess
    import sys
    import tomllib
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    extra = project["optional-dependencies"]["otlp"]
    assert {re.split(r"[<>=;\[ ]", requirement)[0] for requirement in extra} >= {
        "opentelemetry-exporter-otlp-proto-grpc", "opentelemetry-exporter-otlp-proto-http"}
    assert "otel-margin[otlp]" in project["optional-dependencies"]["dev"]
    assert "pip install -e '.[otlp]'" in (repo / "README.md").read_text()
    instrument = Path(sys.executable).with_name("opentelemetry-instrument")
    environment = {**os.environ, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_SERVICE_NAME": "t",
                   "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}
    environment.pop("OTEL_EXPORTER_OTLP_PROTOCOL", None)
    environment.pop("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", None)
    # The SDK's default protocol, gRPC: the one that ended in a traceback (the HTTP exporter was
    # already installed for the benchmarks).
    done = subprocess.run([str(instrument), sys.executable, "-c", "print('app ran')"], cwd=tmp_path,
                          env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "app ran", done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_a_report_on_a_margin_view_from_before_error_calls_says_to_apply_the_schema(
        tmp_path, monkeypatch, capsys) -> None:
    import clickhouse_connect

    from otel_margin import schema

    client = clickhouse_connect.get_client(interface="chdb", path=str(tmp_path / "chdb"))
    try:
        schema.apply_schema(client, ttl_days=0)
        # The margin_daily view as the release before error_calls shipped it.
        view = schema.render("margin_daily_view.sql", database="`otel_margin`", on_cluster="")
        before = view.replace("unpriced_calls, error_calls,", "unpriced_calls,").replace("0, 0, 0, 0,", "0, 0, 0,")
        assert "error_calls" not in "".join(line for line in before.splitlines() if not line.lstrip().startswith("--"))
        client.command(before)
        client.command("INSERT INTO otel_margin.llm_calls (timestamp, feature, cost_usd, cost_status) "
                       "VALUES (now64(), 'search', 0.1, 'priced')")
    finally:
        client.close()
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_ENDPOINT", f"chdb://{tmp_path / 'chdb'}")
    monkeypatch.setenv("OTEL_EXPORTER_CLICKHOUSE_SPOOL_DIR", str(tmp_path / "spool"))
    assert main(["report", "--since", "1"]) == 1
    assert "otel-margin schema apply" in capsys.readouterr().err
    assert main(["schema", "apply"]) == 0
    capsys.readouterr()
    assert main(["report", "--since", "1", "--format", "json"]) == 0
    (total,) = json.loads(capsys.readouterr().out)["total"]
    assert (total["calls"], total["error_calls"]) == (1, 0)
