"""Faults injected the way operations meets them, and what each one cost in rows.

    python benchmarks/faults.py                          # every scenario
    python benchmarks/faults.py --scenarios sigterm kill9 --runs 3

Each scenario runs a worker in a child process (this file with ``--child``) that makes real
instrumented ``openai`` chat calls (the SDK against the in-process stand-in, one customer per call)
at a steady rate, through a real ``TracerProvider`` + ``BatchSpanProcessor`` into the ClickHouse
exporter, printing each call's number once the call returned to it. The parent stops or breaks
it, lets a fresh exporter replay the spool where the scenario says so, and counts the rows in
ClickHouse. Columns:

* **expected**: calls that returned to the worker (its last printed number);
* **found**: of those, the calls with a row; **duplicated**: rows beyond one per call;
* **counted**: calls the worker counted as dropped (exporter stats, or the SIGTERM handler's
  warning), so **lost uncounted** = expected - found - counted.

Scenarios (``--scenarios``):

``sigterm``  SIGTERM after a few seconds, with the SDK's default 5 s span-processor delay, in both
             modes (embedded chDB; HTTP against the loopback ClickHouse-over-chDB server of
             ``tests/clickhouse_http.py``). Rows are counted without a replay: what the handler wrote.
``kill9``    ``kill -9`` at a random moment of a steady rate (``--rate``), ``--runs`` times per
             mode, with the distro's 200 ms span-processor delay; counted after a replay of the
             spool. The loss per kill, divided by the rate, is the crash window.
``disk``     a full disk: the HTTP target is down, so every batch is spooled, onto a 1 MiB tmpfs
             (``mount -t tmpfs``; as root) or, where that fails, a spool limited to 1 MiB; then
             the target comes back and the spool is replayed.
``burst``    ``--burst-rate`` LLM spans a second (default 500) for ``--burst-seconds`` (default 60)
             against a down HTTP target, then the target comes back and the spool is replayed.
             Spans shaped like a real call's, emitted directly: the instrumented SDK path tops
             out near 190 calls a second in one process on the project's machines.

Loopback only; every loop is bounded. Prints a table; no thresholds.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

SCENARIOS = ("sigterm", "kill9", "disk", "burst")
SDK_DEFAULT_DELAY_MS = 5000
DISTRO_DELAY_MS = 200


@dataclass
class Outcome:
    scenario: str
    expected: int
    found: int
    duplicated: int
    counted: int
    note: str = ""

    @property
    def uncounted(self) -> int:
        return self.expected - self.found - self.counted


# --- the worker -------------------------------------------------------------------------------


def child(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(message)s")
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from otel_margin import attribute
    from otel_margin import attributes as a
    from otel_margin.exporters.clickhouse import ClickHouseSpanExporter
    from otel_margin.instrumentation.openai import OpenAIMarginInstrumentor
    from otel_margin.standin import in_process_transport, openai_client

    if args.direct_insert_seconds is not None:  # the release before issue 18 waited the whole timeout
        import otel_margin.exporters.clickhouse as clickhouse

        clickhouse.DIRECT_INSERT_SECONDS = args.direct_insert_seconds
    exporter = ClickHouseSpanExporter(endpoint=args.endpoint, database=args.database, spool_dir=args.spool,
                                      spool_max_mb=args.spool_max_mb, timeout=args.timeout)
    provider = TracerProvider(resource=Resource.create({"service.name": "faults"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=args.delay_ms))
    trace.set_tracer_provider(provider)  # as an application does; the exporter finds its provider there
    total = int(args.rate * args.seconds)
    started = time.monotonic()
    if args.spans:  # the burst: LLM spans shaped like a real call's, without the SDK
        tracer = provider.get_tracer("faults")
        for i in range(total):
            _pace(started, i, args.rate)
            with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
                    a.GEN_AI_OPERATION_NAME: "chat", a.GEN_AI_PROVIDER_NAME: "openai",
                    a.GEN_AI_REQUEST_MODEL: "gpt-4o-mini", a.GEN_AI_USAGE_INPUT_TOKENS: 12,
                    a.GEN_AI_USAGE_OUTPUT_TOKENS: 19, a.MARGIN_CUSTOMER: f"c{i}", a.MARGIN_FEATURE: "faults",
                    a.MARGIN_COST_USD: "0.000013200000", a.MARGIN_COST_STATUS: "priced"}):
                pass
            if i % 500 == 499:
                print("done", i + 1, flush=True)
    else:
        OpenAIMarginInstrumentor().instrument(tracer_provider=provider)
        client = openai_client(in_process_transport())
        # Warmed up as a running service is: the SDK's first request, the table's schema checked.
        with attribute(customer="warm-up", feature="faults"):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        provider.force_flush(5_000)
        print("ready", flush=True)
        started = time.monotonic()
        for i in range(total):
            _pace(started, i, args.rate)
            with attribute(customer=f"c{i}", feature="faults"):
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            print("done", i + 1, flush=True)
    print("done", total, flush=True)
    seconds = time.monotonic() - started  # the calls' time, not the shutdown's
    provider.shutdown()
    stats = exporter.stats()
    print("stats", json.dumps({"dropped": stats.dropped_spans, "seconds": seconds}), flush=True)
    return 0


def _pace(started: float, i: int, rate: float) -> None:
    ahead = started + i / rate - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)


class Worker:
    """A child process running :func:`child`; its stdout read on a thread (so its pipe never fills)."""

    def __init__(self, target: "Target", *, rate: float, seconds: float, delay_ms: int, spans: bool = False,
                 spool_max_mb: float = 256.0, direct_insert_seconds: float | None = None) -> None:
        command = [sys.executable, __file__, "--child", "--endpoint", target.endpoint, "--database", target.database,
                   "--spool", str(target.spool), "--rate", str(rate), "--seconds", str(seconds),
                   "--delay-ms", str(delay_ms), "--spool-max-mb", str(spool_max_mb), "--timeout", "5"]
        if direct_insert_seconds is not None:
            command += ["--direct-insert-seconds", str(direct_insert_seconds)]
        self.process = subprocess.Popen(command + (["--spans"] if spans else []), cwd=target.workdir,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.returned = 0
        self.stats: dict = {}
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            word, _, rest = line.strip().partition(" ")
            if word == "done" and rest.isdigit():  # a line cut by kill -9 is incomplete
                self.returned = int(rest)
                self.ready.set()
            elif word == "ready":
                self.ready.set()
            elif word == "stats":
                self.stats = json.loads(rest)

    def wait_calls(self, calls: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.returned < calls and self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)

    def finish(self, timeout: float = 600.0) -> tuple[int, str]:
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code, self.process.stderr.read()


# --- where rows go ----------------------------------------------------------------------------


class Target:
    """Embedded chDB in a temporary directory, or a fresh database on the loopback HTTP server."""

    def __init__(self, mode: str, workdir: Path, server=None, spool: Path | None = None) -> None:
        self.mode, self.workdir, self.server = mode, workdir, server
        self.spool = spool or workdir / "spool"
        self.database = f"f_{uuid.uuid4().hex[:10]}"
        self.endpoint = f"chdb://{workdir / 'chdb'}" if mode == "chdb" else server.url

    def replay(self) -> None:
        """What the next process does: a fresh exporter writes whatever is spooled."""
        from otel_margin.exporters.clickhouse import ClickHouseSpanExporter

        exporter = ClickHouseSpanExporter(endpoint=self.endpoint, database=self.database, spool_dir=str(self.spool),
                                          drain_interval=3600, timeout=30)
        exporter.force_flush(120_000)
        exporter.shutdown()

    def count(self, expected: int) -> tuple[int, int]:
        """(calls below ``expected`` with a row, rows beyond one per call)."""
        from otel_margin.exporters.storage import StorageConfig, session

        config = StorageConfig(endpoint=self.endpoint, database=self.database, spool_dir=str(self.spool))
        query = (f"SELECT uniqExactIf(customer, customer LIKE 'c%' AND toUInt64OrZero(substring(customer, 2)) < "
                 f"{int(expected)}), count() - uniqExact(span_id) FROM `{self.database}`.llm_calls "
                 "WHERE customer != 'warm-up'")
        try:
            with session(config) as client:
                found, duplicated = client.query(query).result_rows[0]
        except Exception as error:  # noqa: BLE001 - no table: nothing was written
            if "UNKNOWN_DATABASE" in str(error) or "UNKNOWN_TABLE" in str(error) or "doesn't exist" in str(error):
                return 0, 0
            raise
        return int(found), int(duplicated)


def _lost_at_sigterm(stderr: str) -> int:
    match = re.search(r"SIGTERM: (\d+) finished LLM call\(s\) and (\d+) queued span", stderr)
    return int(match.group(1)) + int(match.group(2)) if match else 0


# --- scenarios --------------------------------------------------------------------------------


def sigterm(mode: str, workdir: Path, server, rate: float) -> Outcome:
    target = Target(mode, workdir, server)
    worker = Worker(target, rate=rate, seconds=120, delay_ms=SDK_DEFAULT_DELAY_MS)
    worker.wait_calls(int(rate * 3))
    worker.process.send_signal(signal.SIGTERM)
    code, stderr = worker.finish()
    found, duplicated = target.count(worker.returned)
    return Outcome(f"SIGTERM at {rate:g} calls/s, {mode}", worker.returned, found, duplicated,
                   _lost_at_sigterm(stderr), f"exit {code}, no replay")


def kill9(mode: str, workdir: Path, server, rate: float, run: int) -> Outcome:
    target = Target(mode, workdir, server)
    worker = Worker(target, rate=rate, seconds=120, delay_ms=DISTRO_DELAY_MS)
    worker.wait_calls(int(rate * random.uniform(2.0, 4.0)))
    worker.process.kill()
    worker.finish()
    target.replay()
    found, duplicated = target.count(worker.returned)
    lost = worker.returned - found
    return Outcome(f"kill -9 #{run} at {rate:g} calls/s, {mode}", worker.returned, found, duplicated, 0,
                   f"lost {lost} = {lost / rate * 1000:.0f} ms of calls")


def full_disk(workdir: Path, server, stack: ExitStack) -> Outcome:
    spool = workdir / "tmpfs-spool"
    spool.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(spool)],
                             capture_output=True).returncode == 0
    if mounted:
        stack.callback(subprocess.run, ["umount", str(spool)], capture_output=True)
    target = Target("http", workdir, server, spool=spool)
    server.down()
    try:
        worker = Worker(target, rate=150, seconds=20, delay_ms=DISTRO_DELAY_MS, spool_max_mb=256 if mounted else 1)
        code, stderr = worker.finish()
    finally:
        server.up()
    target.replay()
    found, duplicated = target.count(worker.returned)
    where = "1 MiB tmpfs" if mounted else "spool limit 1 MiB (tmpfs mount failed)"
    return Outcome(f"full disk under the spool ({where}), target down", worker.returned, found, duplicated,
                   int(worker.stats.get("dropped", 0)), f"exit {code}; replayed once the target was back")


def burst(workdir: Path, server, rate: float, seconds: float, direct_insert_seconds: float | None) -> Outcome:
    target = Target("http", workdir, server)
    server.down()
    try:
        worker = Worker(target, rate=rate, seconds=seconds, delay_ms=DISTRO_DELAY_MS, spans=True,
                        direct_insert_seconds=direct_insert_seconds)
        code, stderr = worker.finish(timeout=seconds * 10 + 120)
    finally:
        server.up()
    target.replay()
    found, duplicated = target.count(worker.returned)
    took = worker.stats.get("seconds", 0.0)
    waited = "" if direct_insert_seconds is None else f", export waiting {direct_insert_seconds:g} s"
    return Outcome(f"burst {rate:g} spans/s for {seconds:g} s, target down{waited}", worker.returned, found,
                   duplicated,
                   int(worker.stats.get("dropped", 0)),
                   f"exit {code}; {worker.returned / took if took else 0:.0f} spans/s achieved; replayed after")


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--modes", nargs="+", choices=("chdb", "http"), default=["chdb", "http"])
    parser.add_argument("--rate", type=float, default=50.0, help="calls a second for sigterm and kill9 (default 50)")
    parser.add_argument("--runs", type=int, default=3, help="kill -9 runs per mode (default 3)")
    parser.add_argument("--burst-rate", type=float, default=500.0)
    parser.add_argument("--burst-seconds", type=float, default=60.0)
    parser.add_argument("--direct-insert-seconds", type=float, metavar="S",
                        help="how long export() retries an HTTP insert before spooling (default: the exporter's 2 s; "
                             "10 is the release before issue 18)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name, kind in (("endpoint", str), ("database", str), ("spool", str), ("seconds", float),
                       ("delay-ms", int), ("spool-max-mb", float), ("timeout", float)):
        parser.add_argument(f"--{name}", type=kind, help=argparse.SUPPRESS)
    parser.add_argument("--spans", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    from clickhouse_http import LoopbackClickHouse

    outcomes: list[Outcome] = []
    with ExitStack() as stack:
        base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="otel-margin-faults-")))
        server = LoopbackClickHouse(base / "server")
        stack.callback(server.stop)
        runs = 0

        def workdir() -> Path:
            nonlocal runs
            runs += 1
            path = base / f"run{runs}"
            path.mkdir()
            return path

        if "sigterm" in args.scenarios:
            for mode in args.modes:
                outcomes.append(sigterm(mode, workdir(), server, args.rate))
                _progress(outcomes[-1])
        if "kill9" in args.scenarios:
            for mode in args.modes:
                for run in range(1, args.runs + 1):
                    outcomes.append(kill9(mode, workdir(), server, args.rate, run))
                    _progress(outcomes[-1])
        if "disk" in args.scenarios:
            outcomes.append(full_disk(workdir(), server, stack))
            _progress(outcomes[-1])
        if "burst" in args.scenarios:
            outcomes.append(burst(workdir(), server, args.burst_rate, args.burst_seconds, args.direct_insert_seconds))
            _progress(outcomes[-1])
    if args.json:
        print(json.dumps([{**o.__dict__, "uncounted": o.uncounted} for o in outcomes], indent=2))
    else:
        print(_table(outcomes))
    return 0


def _progress(outcome: Outcome) -> None:
    print(f"# {outcome.scenario}: {outcome.found}/{outcome.expected}", file=sys.stderr, flush=True)


def _table(outcomes: list[Outcome]) -> str:
    lines = ["| scenario | rows expected | found | duplicated | counted as dropped | lost uncounted | note |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for o in outcomes:
        lines.append(f"| {o.scenario} | {o.expected} | {o.found} | {o.duplicated} | {o.counted} | {o.uncounted} "
                     f"| {o.note} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
