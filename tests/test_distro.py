"""Zero-code start: ``opentelemetry-instrument python app.py`` instruments both SDKs.

Runs real subprocesses under ``opentelemetry-instrument`` with the console exporter (the
user's choice, which the distro must not override) and reads the spans it prints.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from otel_margin.distro import MarginDistro

APP = textwrap.dedent(
    """
    from opentelemetry import baggage, context, trace
    from opentelemetry.trace import SpanKind
    from otel_margin.standin import StandInServer, anthropic_client, openai_client

    with StandInServer() as server:
        ctx = baggage.set_baggage("margin.feature", "from-upstream")
        ctx = baggage.set_baggage("margin.customer", "acme", ctx)
        token = context.attach(ctx)
        openai_client(server).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        context.detach(token)
        tracer = trace.get_tracer("app")
        with tracer.start_as_current_span("POST /api/summarize", kind=SpanKind.SERVER,
                                          attributes={"http.route": "/api/summarize"}):
            anthropic_client(server).messages.create(
                model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    print("APP-DONE")
    """
)
POLICY = '[attribution.routes]\n"/api/summarize" = "summarize"\n'


def run_instrumented(tmp_path: Path, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "otel-margin.toml").write_text(POLICY)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "OTEL_MARGIN_"))
    }
    env.update({"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"})
    env.update(extra_env)
    instrument = shutil.which("opentelemetry-instrument") or "opentelemetry-instrument"
    return subprocess.run(
        [instrument, sys.executable, "app.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )


def console_spans(stdout: str) -> list[dict]:
    """The JSON span objects the console exporter printed."""
    spans, depth, start = [], 0, None
    for index, char in enumerate(stdout):
        if char == "{":
            depth += 1
            if depth == 1:
                start = index
        elif char == "}":
            depth -= 1
            if depth == 0 and start is not None:
                try:
                    spans.append(json.loads(stdout[start : index + 1]))
                except ValueError:
                    pass
    return [s for s in spans if "attributes" in s]


def test_zero_code_instruments_both_sdks_with_baggage_and_routes(tmp_path):
    result = run_instrumented(tmp_path, {})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "APP-DONE" in result.stdout
    llm = [s for s in console_spans(result.stdout) if "gen_ai.operation.name" in s["attributes"]]
    assert [s["name"] for s in llm] == ["chat gpt-4o-mini", "chat claude-haiku-4-5"], result.stdout[-3000:]
    openai_span, anthropic_span = (s["attributes"] for s in llm)
    assert openai_span["margin.feature"] == "from-upstream"
    assert openai_span["margin.customer"] == "acme"
    assert openai_span["margin.attribution.source"] == "baggage"
    assert anthropic_span["margin.feature"] == "summarize"
    assert anthropic_span["margin.attribution.source"] == "route"
    for attributes in (openai_span, anthropic_span):
        assert attributes["margin.cost.status"] == "priced"
        assert attributes["gen_ai.usage.input_tokens"] > 0
    # anthropic's own self-tracing span does not appear inside our call
    assert not any(s["name"].startswith("anthropic.") for s in console_spans(result.stdout))


def test_broken_policy_file_is_reported_and_calls_still_work(tmp_path):
    (tmp_path / "broken.toml").write_text('[prices.models."x"]\ninptu_per_mtok = "1"\n')
    result = run_instrumented(tmp_path, {"OTEL_MARGIN_POLICY": str(tmp_path / "broken.toml")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "APP-DONE" in result.stdout
    assert "broken.toml" in result.stderr


def test_failing_instrumentor_does_not_stop_the_others(tmp_path):
    plugin_dir = tmp_path / "site"
    package = plugin_dir / "broken_instrumentor"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "from opentelemetry.instrumentation.instrumentor import BaseInstrumentor\n"
        "class Broken(BaseInstrumentor):\n"
        "    def instrumentation_dependencies(self):\n        return ()\n"
        "    def _instrument(self, **kw):\n        raise RuntimeError('boom')\n"
        "    def _uninstrument(self, **kw):\n        pass\n"
    )
    dist_info = plugin_dir / "broken_instrumentor-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-instrumentor\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[opentelemetry_instrumentor]\naaa_broken = broken_instrumentor:Broken\n")
    result = run_instrumented(
        tmp_path,
        {"PYTHONPATH": str(plugin_dir), "OTEL_PYTHON_DISTRO": "otel_margin", "OTEL_PYTHON_CONFIGURATOR": "otel_margin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "aaa_broken" in result.stderr
    llm = [s for s in console_spans(result.stdout) if "gen_ai.operation.name" in s["attributes"]]
    assert len(llm) == 2


def test_distro_sets_defaults_and_never_overrides(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.delenv("OTEL_METRICS_EXPORTER", raising=False)
    MarginDistro()._configure()
    assert os.environ["OTEL_TRACES_EXPORTER"] == "otlp"
    assert os.environ["OTEL_METRICS_EXPORTER"] == "none"


@pytest.mark.parametrize("group,name", [
    ("opentelemetry_instrumentor", "otel_margin_openai"),
    ("opentelemetry_instrumentor", "otel_margin_anthropic"),
    ("opentelemetry_distro", "otel_margin"),
])
def test_entry_points_are_installed(group, name):
    from importlib.metadata import entry_points

    assert name in {ep.name for ep in entry_points(group=group)}


def test_opentelemetry_instrument_takes_every_otel_margin_variable_as_a_flag(tmp_path):
    from otel_margin import environment_variables as variables

    names = sorted(name for name in vars(variables) if name.startswith("OTEL_"))
    flags = [arg for name in names for arg in (f"--{name.lower()[len('otel_'):]}", f"value-of-{name}")]
    instrument = shutil.which("opentelemetry-instrument") or "opentelemetry-instrument"
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update({"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"})
    script = f"import json, os; print(json.dumps([os.environ.get(n) for n in {names!r}]))"
    shown = subprocess.run([instrument, *flags, sys.executable, "-c", script],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout.splitlines()[-1]) == [f"value-of-{name}" for name in names]
