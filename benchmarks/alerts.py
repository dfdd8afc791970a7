"""Time to evaluate every built-in alert rule on N synthetic calls in chDB.

    python benchmarks/alerts.py                      # 10,000,000 calls over 30 days
    python benchmarks/alerts.py --calls 1000000 --repeat 5

The calls come from the generator of ``benchmarks/margin_queries.py`` (INSERT … SELECT in the
engine, so the rollups fill as under the exporter; 2,000 customers, 8 features, 3 models, a
monthly subscription per customer, units with outcomes and cost lines). Each rule file of
``otel_margin/analysis/alerts/rules/`` then runs as the alert engine runs it (``$database``
filled in, the parameters it names bound from ``thresholds.parameters``, evaluated at the
last generated day), ``--repeat`` times. Prints the median wall-clock and CPU seconds per rule,
the rows each returned, and the sum of the medians; the target is under 5 s for all rules.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, time as clock, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from margin_queries import DATABASE, START, add_store_arguments, store  # noqa: E402 - the shared generator

from otel_margin.analysis.alerts.rules import load_rules  # noqa: E402
from otel_margin.analysis.alerts.thresholds import parameters  # noqa: E402
from otel_margin.policy import Policy  # noqa: E402

TARGET_SECONDS = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_store_arguments(parser)
    parser.add_argument("--repeat", type=int, default=3, help="runs per rule; the median is shown")
    args = parser.parse_args()
    with store(parser, args) as client:
        report(client, args)


def report(client, args) -> None:
    now = datetime.combine(START + timedelta(days=args.days - 1), clock(18), timezone.utc)
    rules, failures = load_rules([])
    assert not failures, failures
    began = time.process_time()
    values = parameters(Policy(), now=now, client=client, database=DATABASE)
    print(f"parameters (current prices of {len(values['current_prices'])} models): "
          f"{time.process_time() - began:.3f} s CPU; rules evaluated at {now:%Y-%m-%d %H:%M} UTC")
    print(f"{'rule':<26} {'wall s':>8} {'CPU s':>8} {'rows':>6}")
    total_wall = total_cpu = 0.0
    for rule in rules:
        sql = rule.render(database=DATABASE)
        bound = {name: values[name] for name in rule.parameters}
        walls, cpus, rows = [], [], 0
        for _ in range(args.repeat):
            wall, cpu = time.perf_counter(), time.process_time()
            rows = len(client.query(sql, parameters=bound).result_rows)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        total_wall += wall
        total_cpu += cpu
        print(f"{rule.name:<26} {wall:8.3f} {cpu:8.3f} {rows:6d}")
    verdict = "met" if total_wall < TARGET_SECONDS else "NOT met"
    print(f"{'all rules':<26} {total_wall:8.3f} {total_cpu:8.3f}   target < {TARGET_SECONDS:.0f} s wall: {verdict}")


if __name__ == "__main__":
    main()
