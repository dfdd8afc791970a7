"""Time to read the whole dashboard's data, and to write its snapshot, on N synthetic calls in chDB.

    python benchmarks/dashboard.py                     # 10,000,000 calls over 30 days
    python benchmarks/dashboard.py --calls 1000000 --repeat 5
    python benchmarks/dashboard.py --path /tmp/bench-chdb          # generate once (kept) ...
    python benchmarks/dashboard.py --path /tmp/bench-chdb --reuse  # ... and time again

Generates the calls with margin_queries.py's generator (INSERT … SELECT FROM numbers() into
``llm_calls``, so every rollup fills as under the exporter, plus a monthly subscription per
customer), then times, as the dashboard runs them for its default 30-day page ending on the last
generated day: the whole data document (every view's queries and their Python assembly, one call
of ``otel_margin.analysis.dashboard.data.build``) and each query inside it, then writing the
snapshot (HTML with plotly.js and the data inlined) to a file. Prints medians of wall clock and of
this process's CPU (chDB runs in-process). Target: under 2 s for the whole dashboard's data.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, time as clock, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import margin_queries  # noqa: E402 - the generator, shared with the margin query benchmark

from otel_margin.analysis.dashboard import data, page  # noqa: E402
from otel_margin.policy import Policy  # noqa: E402

DATABASE = margin_queries.DATABASE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    margin_queries.add_store_arguments(parser)
    parser.add_argument("--page-days", type=int, default=30, help="the dashboard's period, the last days (default 30)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the median is shown")
    args = parser.parse_args()
    with margin_queries.store(parser, args) as client:
        measure(client, args)


def measure(client, args) -> None:
    last_day = margin_queries.START + timedelta(days=args.days - 1)
    now = datetime.combine(last_day, clock(23, 30), timezone.utc)  # the page as seen late on the last day
    filters = data.Filters(days=args.page_days, end=last_day)
    policy = Policy()
    query_times = _instrument()
    build = lambda: data.build(client, filters, policy=policy, database=DATABASE, now=now)  # noqa: E731
    document = build()  # warm-up: the first run also loads the parts' marks
    query_times.clear()
    wall, cpu, document = margin_queries.timed(build, args.repeat)
    print(f"\ndashboard data, {filters.days} days ending {last_day} ({args.repeat} runs, median):")
    print(f"  {'whole document (every view)':<40} {wall:>8.3f} s wall {cpu:>8.3f} s CPU   target < 2 s")
    for name, times in query_times.items():
        print(f"    {name:<38} {statistics.median(times):>8.3f} s wall")
    snapshot_file = Path(tempfile.mkdtemp(prefix="dashboard-snapshot-")) / "margin.html"
    write = lambda: snapshot_file.write_text(page.snapshot(document), encoding="utf-8")  # noqa: E731
    page.plotly_js()  # read once per process, as the CLI does
    wall, cpu, _ = margin_queries.timed(write, args.repeat)
    size = snapshot_file.stat().st_size
    shutil.rmtree(snapshot_file.parent)
    print(f"  {'write the snapshot (HTML, ' + f'{size / 1e6:.1f} MB)':<40} {wall:>8.3f} s wall {cpu:>8.3f} s CPU")
    views = document["views"]
    print(f"  rows: {sum(len(s['day']) for s in views['daily']['series'])} daily points, "
          f"{len(views['customers']['points'])} customers plotted of {views['customers']['customers_total']}, "
          f"{len(views['cost_map']['rows'])} cost-map features, {document['totals']['calls']:,} calls in the period")


def _instrument() -> dict[str, list[float]]:
    """Record the wall time of each query the dashboard runs (by its SQL file or margin function)."""
    times: dict[str, list[float]] = defaultdict(list)
    rows = data._rows

    def timed_rows(client, name, database, parameters):
        began = time.perf_counter()
        try:
            return rows(client, name, database, parameters)
        finally:
            times[f"{name}.sql"].append(time.perf_counter() - began)

    data._rows = timed_rows
    for module, function in ((data.margin, "cost_map"), (data.margin, "guardrails"), (data.units, "cost_per_unit")):
        original = getattr(module, function)
        name = f"{module.__name__.rsplit('.', 1)[-1]}.{function}"

        def wrapped(*a, _original=original, _name=name, **k):
            began = time.perf_counter()
            try:
                return _original(*a, **k)
            finally:
                times[_name].append(time.perf_counter() - began)

        setattr(module, function, wrapped)
    return times


if __name__ == "__main__":
    main()
