"""Start-up time of an application under zero-code instrumentation: otel-margin against its peers.

    python benchmarks/startup.py                  # every contender and app, 7 rounds
    python benchmarks/startup.py --rounds 15 --json

Apps (each a script run as ``python APP.py``): ``empty`` (nothing), ``openai`` (``import
openai``), ``openai-chat`` (``import openai`` and a client's ``chat.completions``: what a chat
app reaches before its first call; ``openai`` imports that resource lazily, and otel-margin
patches it, and loads its pipeline and price catalog, only then) and ``anthropic`` (``import
anthropic``).

Contenders, each app run under each:

``python``           the bare interpreter, no ``opentelemetry-instrument``
``otel-instrument``  ``opentelemetry-instrument`` with no instrumentor at all: the SDK, the distro,
                     the configurator and the exporter set up, nothing patched (the baseline the
                     ``added`` figures are taken over)
``otel-margin``      ``opentelemetry-instrument`` with otel-margin's two instrumentors only
``official``         ... with ``opentelemetry-instrumentation-openai-v2`` only
``openllmetry``      ... with ``opentelemetry-instrumentation-openai`` and ``-anthropic`` only

The official instrumentation and OpenLLMetry's both register their OpenAI instrumentor under the
entry-point name ``openai``, so ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` cannot tell them
apart. Contenders are chosen by distribution instead: the runs put a folder on ``PYTHONPATH``
holding a one-class distro (``OTEL_PYTHON_DISTRO=startup_select``) that is otel-margin's own
distro except that it loads only the chosen distributions' instrumentors, and writes down the
ones it loaded. Everything else is the real ``opentelemetry-instrument python APP.py``, the
same for every contender: the dependency checks of every installed instrumentor, the SDK's
configurator, the trace exporter (``--exporter``, default ``console``; it exports nothing here,
as nothing is traced), no metrics or logs exporter.

Method: the wall-clock time of the whole process, from ``subprocess.run`` to its exit. Every
(app, contender) pair runs once untimed first (files into the page cache, bytecode compiled;
that run also checks that the contender's instrumentors loaded, or skips it with a note), then
``--rounds`` times, every pair once per round, taking turns, so that a slow spell of a shared
machine weighs on everyone. A cell shows the median and the range of its runs, and below it the
median, over the rounds, of the difference from ``otel-instrument`` on the same app in the same
round: what the contender adds to ``opentelemetry-instrument``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

APPS = {
    "empty": "",
    "openai": "import openai\n",
    # openai imports its resources lazily: a chat app pays for them (and otel-margin patches
    # them) when it first reaches client.chat, before its first call.
    "openai-chat": "import openai\nopenai.OpenAI(api_key='unused').chat.completions\n",
    "anthropic": "import anthropic\n",
}

CONTENDERS: dict[str, tuple[str, ...] | None] = {
    "python": None,  # not under opentelemetry-instrument
    "otel-instrument": (),
    "otel-margin": ("otel-margin",),
    "official": ("opentelemetry-instrumentation-openai-v2",),
    "openllmetry": ("opentelemetry-instrumentation-openai", "opentelemetry-instrumentation-anthropic"),
}
"""Contender name → the distributions whose instrumentors it loads (``None``: bare python)."""

BASELINE = "otel-instrument"

SELECTING_DISTRO = '''
"""The benchmark's distro: otel-margin's, loading only the instrumentors of chosen distributions."""
import os
from opentelemetry.instrumentation.distro import BaseDistro
from otel_margin.distro import MarginDistro


def _normal(name):
    return name.lower().replace("_", "-")


class SelectingDistro(MarginDistro):
    def load_instrumentor(self, entry_point, **kwargs):
        wanted = {_normal(n) for n in os.environ["STARTUP_DISTRIBUTIONS"].split(",") if n}
        dist = getattr(entry_point, "dist", None)
        if dist is None or _normal(dist.name) not in wanted:
            return
        BaseDistro.load_instrumentor(self, entry_point, **kwargs)  # raises what fails: loader logs it
        with open(os.environ["STARTUP_LOADED"], "a") as loaded:
            loaded.write(f"{_normal(dist.name)} {entry_point.name}\\n")
'''


def main(argv: list[str] | None = None) -> int:
    """Time every app under every contender and print the table (or JSON)."""
    args = _parse_args(argv)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="otel-margin-startup-") as folder:
        work = Path(folder)
        _write_selecting_distro(work / "site")
        for app, code in APPS.items():
            (work / f"app_{app}.py").write_text(code)  # not openai.py: it would shadow the SDK
        pairs = [(app, name) for app in args.apps for name in args.contenders]
        notes: list[str] = []
        for app, name in pairs:  # untimed: page cache, bytecode, and did the instrumentors load?
            problem = _check(work, app, name, args)
            if problem and not any(note.startswith(f"{name}:") for note in notes):
                notes.append(f"{name}: skipped — {problem}")
        skipped = {note.split(":", 1)[0] for note in notes}
        pairs = [(app, name) for app, name in pairs if name not in skipped]
        wall: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
        cpu: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
        for round_number in range(args.rounds):
            # Taking turns; the order rotates each round so no pair always follows the same one.
            shift = round_number % len(pairs)
            for app, name in pairs[shift:] + pairs[:shift]:
                wall_s, cpu_s = _time_once(work, app, name, args)
                wall[(app, name)].append(wall_s)
                cpu[(app, name)].append(cpu_s)
    results = {"wall": _summarize(wall), "cpu": _summarize(cpu)}
    elapsed = time.perf_counter() - started
    load = (round(load_before, 2), round(os.getloadavg()[0], 2))
    if args.json:
        print(json.dumps({"rounds": args.rounds, "exporter": args.exporter, "elapsed_s": round(elapsed, 1),
                          "load_average": load, "results": results, "notes": notes}, indent=2))
    else:
        _print_table(results, args, notes, elapsed, load)
    return 0


# ---------------------------------------------------------------- running one app


def _write_selecting_distro(site: Path) -> None:
    dist_info = site / "startup_select-0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: startup-select\nVersion: 0\n")
    (dist_info / "entry_points.txt").write_text(
        "[opentelemetry_distro]\nstartup_select = startup_select:SelectingDistro\n")
    (site / "startup_select.py").write_text(textwrap.dedent(SELECTING_DISTRO))


def _command(work: Path, app: str, name: str, args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    script = str(work / f"app_{app}.py")
    distributions = CONTENDERS[name]
    if distributions is None:
        return [sys.executable, script], env
    env.update({
        "OTEL_PYTHON_DISTRO": "startup_select",
        "OTEL_TRACES_EXPORTER": args.exporter,
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "STARTUP_DISTRIBUTIONS": ",".join(distributions),
        "STARTUP_LOADED": str(work / "loaded.txt"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(work / "site"), env.get("PYTHONPATH")) if p),
    })
    instrument = Path(sys.executable).with_name("opentelemetry-instrument")
    return [str(instrument), sys.executable, script], env


def _time_once(work: Path, app: str, name: str, args: argparse.Namespace) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one run of ``app`` under ``name``."""
    command, env = _command(work, app, name, args)
    cpu_before = _children_cpu()
    begun = time.perf_counter()
    subprocess.run(command, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - begun, _children_cpu() - cpu_before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # waited-for children: the run just ended
    return usage.ru_utime + usage.ru_stime


def _check(work: Path, app: str, name: str, args: argparse.Namespace) -> str | None:
    """Run once, untimed; a reason to skip the contender, or ``None``."""
    command, env = _command(work, app, name, args)
    loaded = work / "loaded.txt"
    loaded.unlink(missing_ok=True)
    result = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return f"exit {result.returncode}: {result.stderr.strip()[-300:]}"
    wanted = set(CONTENDERS[name] or ())
    got = {line.split()[0] for line in loaded.read_text().splitlines()} if loaded.exists() else set()
    if got != wanted:
        missing = ", ".join(sorted(wanted - got))
        return f"instrumentors of {missing} did not load: {result.stderr.strip()[-300:] or 'no error printed'}"
    return None


# ---------------------------------------------------------------- figures


def _summarize(times: dict[tuple[str, str], list[float]]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for (app, name), runs in times.items():
        cell: dict[str, Any] = {
            "median_s": round(statistics.median(runs), 3),
            "min_s": round(min(runs), 3),
            "max_s": round(max(runs), 3),
            "runs_s": [round(t, 3) for t in runs],
        }
        baseline = times.get((app, BASELINE))
        if baseline is not None and name not in (BASELINE, "python"):
            cell["added_s"] = round(statistics.median(t - b for t, b in zip(runs, baseline)), 3)
        results.setdefault(name, {})[app] = cell
    return results


def _print_table(results: dict[str, dict[str, dict[str, Any]]], args: argparse.Namespace, notes: list[str],
                 elapsed: float, load: tuple[float, float]) -> None:
    print(f"Start-up, seconds: median (min–max) of {args.rounds} runs; 'added': median per-round "
          f"difference from {BASELINE} on the same app")
    print(f"trace exporter: {args.exporter}; load average {load[0]} before, {load[1]} after")
    for measure, title in (("wall", "wall-clock time"), ("cpu", "CPU time (user + system, every thread)")):
        print(f"\n{title}")
        header = ["contender"] + [f"app: {app}" for app in args.apps]
        rows = [header]
        for name in args.contenders:
            if name not in results[measure]:
                continue
            row = [name]
            for app in args.apps:
                cell = results[measure][name].get(app)
                if cell is None:
                    row.append("—")
                    continue
                text = f"{cell['median_s']:.2f} ({cell['min_s']:.2f}–{cell['max_s']:.2f})"
                if "added_s" in cell:
                    text += f" added {cell['added_s']:+.2f}"
                row.append(text)
            rows.append(row)
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for row in rows:
            print(" | ".join(value.ljust(width) for value, width in zip(row, widths)))
    for note in notes:
        print(f"note: {note}")
    print(f"\n{elapsed / 60:.1f} minutes")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="timed runs of every (app, contender) pair")
    parser.add_argument("--apps", nargs="+", choices=APPS, default=list(APPS))
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--exporter", default="console",
                        help="OTEL_TRACES_EXPORTER for every instrumented run (default: console)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args(argv)
    if BASELINE not in args.contenders:
        args.contenders.insert(0, BASELINE)  # the 'added' figures need it
    return args


if __name__ == "__main__":
    sys.exit(main())
