"""Start-up: an SDK is patched when the application imports it, not when it is instrumented.

Every test runs a fresh interpreter: this one has imported both SDKs long ago. Under
``opentelemetry-instrument`` the peers' instrumentors are switched off by name
(``openai``, ``anthropic``): they import the SDKs at start themselves.
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
from test_distro import console_spans

PEERS_OFF = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai,anthropic"}

LOADED = """
import json, sys
def loaded(*names):
    return [name for name in names if name in sys.modules]
"""

HEAVY = ("openai", "anthropic", "genai_prices", "otel_margin.prices", "otel_margin.pipeline")


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update({"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"})
    env.update(extra)
    return env


def run_instrumented(tmp_path: Path, app: str, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "app.py").write_text(LOADED + textwrap.dedent(app))
    instrument = shutil.which("opentelemetry-instrument") or "opentelemetry-instrument"
    return subprocess.run([instrument, sys.executable, "app.py"], cwd=tmp_path, env=clean_env(extra_env),
                          capture_output=True, text=True, timeout=120)


def run_python(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "script.py").write_text(LOADED + textwrap.dedent(script))
    return subprocess.run([sys.executable, "script.py"], cwd=tmp_path, env=clean_env({}),
                          capture_output=True, text=True, timeout=120)


def last_json(result: subprocess.CompletedProcess[str]) -> object:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads([line for line in result.stdout.splitlines() if line.startswith("RESULT ")][-1][7:])


def test_zero_code_start_imports_neither_sdk_nor_the_catalog(tmp_path) -> None:
    shown = last_json(run_instrumented(tmp_path, f"""
        from otel_margin.instrumentation.anthropic import AnthropicMarginInstrumentor
        from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor
        print("RESULT", json.dumps({{
            "loaded": loaded(*{HEAVY!r}),
            "instrumented": [i().is_instrumented_by_opentelemetry
                             for i in (OpenAIMarginInstrumentor, AnthropicMarginInstrumentor)],
        }}))
    """, PEERS_OFF))
    assert shown == {"loaded": [], "instrumented": [True, True]}


def test_sdks_imported_later_are_patched_with_the_catalog_ready_for_the_first_call(tmp_path) -> None:
    result = run_instrumented(tmp_path, """
        from otel_margin.standin import StandInServer, anthropic_client, openai_client

        shown = {"at start": loaded("openai", "anthropic", "genai_prices")}
        import openai
        # openai imports its resources lazily: its import alone costs nothing of ours.
        shown["after import openai"] = loaded("otel_margin.pipeline", "genai_prices")
        with StandInServer() as server:
            oai = openai_client(server)
            oai.chat.completions  # imports the chat resource, which the hook patches
            # Built then, on this thread: the finisher will not import or build it.
            shown["catalog built"] = sys.modules["otel_margin.prices"]._default_catalog is not None
            shown["anthropic"] = loaded("anthropic")
            oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            anthropic_client(server).messages.create(
                model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
        print("RESULT", json.dumps(shown))
    """, PEERS_OFF)
    assert last_json(result) == {"at start": [], "after import openai": [], "catalog built": True, "anthropic": []}
    llm = [s["attributes"] for s in console_spans(result.stdout) if "gen_ai.operation.name" in s["attributes"]]
    assert [a["gen_ai.provider.name"] for a in llm] == ["openai", "anthropic"], result.stdout[-3000:]
    for attributes in llm:
        assert attributes["margin.cost.status"] == "priced"
        assert attributes["gen_ai.usage.input_tokens"] > 0


def test_every_patched_module_is_watched() -> None:
    from otel_margin.instrumentation.anthropic import AnthropicMarginInstrumentor
    from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor

    for instrumentor in (OpenAIMarginInstrumentor(), AnthropicMarginInstrumentor()):
        assert sorted(instrumentor.modules) == sorted({patch.module for patch in instrumentor.patches()})
        assert all(name.split(".")[0] == instrumentor.sdk for name in instrumentor.modules)


def test_instrument_cycles_before_the_import(tmp_path) -> None:
    shown = last_json(run_python(tmp_path, """
        import wrapt
        from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor

        def layers():
            from openai.resources.chat.completions.completions import Completions
            method, found = vars(Completions)["create"], 0
            while isinstance(method, wrapt.FunctionWrapper):
                found += method._self_wrapper.__module__.startswith("otel_margin.")
                method = method.__wrapped__
            return found

        instrumentor = OpenAIMarginInstrumentor()
        instrumentor.instrument()
        instrumentor.uninstrument()
        instrumentor.instrument()
        instrumentor.uninstrument()
        import openai
        bare = layers()                  # uninstrumented before the import: left alone
        instrumentor.instrument()
        patched_at_once = layers()       # already imported: patched now
        instrumentor.uninstrument()
        print("RESULT", json.dumps([bare, patched_at_once, layers()]))
    """))
    assert shown == [0, 1, 0]


def test_instrumented_twice_before_the_import_patches_once(tmp_path) -> None:
    shown = last_json(run_python(tmp_path, """
        import wrapt
        from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor

        instrumentor = OpenAIMarginInstrumentor()
        instrumentor.instrument()
        instrumentor.uninstrument()
        instrumentor.instrument()        # two import hooks are now registered
        from openai.resources.chat.completions.completions import Completions
        method, ours = vars(Completions)["create"], 0
        while isinstance(method, wrapt.FunctionWrapper):
            ours += method._self_wrapper.__module__.startswith("otel_margin.")
            method = method.__wrapped__
        print("RESULT", json.dumps(ours))
    """))
    assert shown == 1


@pytest.mark.parametrize("peer_hook", ["openai", "openai.resources.chat.completions.completions"])
def test_a_peer_patching_on_import_after_ours_ends_up_inside_ours(tmp_path, peer_hook) -> None:
    shown = last_json(run_python(tmp_path, f"""
        import wrapt
        from otel_margin.instrumentation import ensure_outermost
        from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor

        def peer_wrapper(wrapped, instance, args, kwargs):
            return wrapped(*args, **kwargs)

        def peer_patch(module):  # a peer that, like us, patches the SDK when it is imported
            wrapt.wrap_function_wrapper("openai.resources.chat.completions.completions",
                                        "Completions.create", peer_wrapper)

        OpenAIMarginInstrumentor().instrument()
        wrapt.register_post_import_hook(peer_patch, "{peer_hook}")  # an instrumentor loaded after ours
        ensure_outermost()  # opentelemetry-instrument's post-instrument step, before the app runs
        from openai.resources.chat.completions.completions import Completions
        chain, method = [], vars(Completions)["create"]
        while isinstance(method, wrapt.FunctionWrapper):
            chain.append("peer" if method._self_wrapper is peer_wrapper else method._self_wrapper.__module__)
            method = method.__wrapped__
        print("RESULT", json.dumps(chain))
    """))
    assert shown == ["otel_margin.pipeline", "peer"]


def test_a_failure_while_patching_never_fails_the_applications_import(tmp_path) -> None:
    result = run_python(tmp_path, """
        import logging
        from otel_margin import pipeline
        from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor

        def broken(*args, **kwargs):
            raise RuntimeError("otel-margin bug (injected by the test)")

        logging.basicConfig()
        pipeline.Settings.load = broken
        OpenAIMarginInstrumentor().instrument()
        import openai
        from openai.resources.chat.completions.completions import Completions
        print("RESULT", json.dumps(type(vars(Completions)["create"]).__name__))
    """)
    assert last_json(result) == "function"
    assert "OpenAIMarginInstrumentor could not start" in result.stderr
    assert "injected by the test" in result.stderr
