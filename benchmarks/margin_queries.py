"""Margin-query latency on N synthetic calls in chDB: raw table vs rollups.

    python benchmarks/margin_queries.py                 # 10,000,000 calls over 30 days
    python benchmarks/margin_queries.py --calls 1000000 --repeat 5
    python benchmarks/margin_queries.py --calls 3000000 --days 365   # a year of history, last 30 days reported

Generates the calls inside the engine (INSERT … SELECT FROM numbers(), in chunks, so the
rollup materialized views fill exactly as they do under the exporter), adds one monthly
subscription per customer (revenue without a feature: every query allocates it by usage),
then times every report query over the last --report-days days twice: as shipped (over the
rollups) and over raw ``llm_calls`` (the same SQL with each rollup replaced by a view that
aggregates the raw rows). Prints one table; the target is < 1 s per query on the rollups.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import clickhouse_connect

from otel_margin import schema
from otel_margin.analysis import margin

DATABASE = "bench_margin"
START = date(2024, 5, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10_000_000, help="synthetic calls (default 10,000,000)")
    parser.add_argument("--days", type=int, default=30, help="days the calls spread over (default 30)")
    parser.add_argument("--report-days", type=int, default=30, help="days the queries cover, the last ones (default 30)")
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=1_000_000, help="rows per INSERT … SELECT")
    parser.add_argument("--repeat", type=int, default=3, help="runs per query; the median is shown")
    parser.add_argument("--path", help="chDB directory (default: a temporary one, removed afterwards)")
    args = parser.parse_args()

    path = Path(args.path) if args.path else Path(tempfile.mkdtemp(prefix="margin-bench-"))
    client = clickhouse_connect.get_client(interface="chdb", path=str(path))
    try:
        seconds = generate(client, args)
        print(f"generated {args.calls:,} calls over {args.days} days, {args.customers:,} customers, "
              f"{args.features} features in {seconds:.1f} s ({args.calls / seconds:,.0f} rows/s incl. rollups)")
        print(sizes(client))
        create_raw_views(client)
        report(client, args)
    finally:
        client.close()
        if not args.path:
            shutil.rmtree(path, ignore_errors=True)


def generate(client, args) -> float:
    client.command(f"DROP DATABASE IF EXISTS {DATABASE}")
    schema.apply_schema(client, database=DATABASE, ttl_days=0)
    span_seconds = args.days * 86_400
    began = time.perf_counter()
    for offset in range(0, args.calls, args.chunk):
        count = min(args.chunk, args.calls - offset)
        client.command(f"""
            INSERT INTO {DATABASE}.llm_calls
            SELECT
                toDateTime64('{START} 00:00:00', 6, 'UTC') + toIntervalMicrosecond(toUInt64(intDiv(toUInt128(n) * {span_seconds} * 1000000, {args.calls}))) AS timestamp,
                hex(cityHash64(n, 'trace')) AS trace_id, hex(cityHash64(n, 'span')) AS span_id, 'bench' AS service_name,
                concat('feature-', toString(cityHash64(n, 'f') % {args.features})) AS feature,
                ['free', 'pro', 'team', 'enterprise'][customer_no % 4 + 1] AS tier,
                concat('2024-Q', toString(customer_no % 4 + 1)) AS cohort,
                concat('customer-', toString(customer_no)) AS customer,
                'openai' AS provider, 'chat' AS operation,
                ['gpt-4o-mini', 'gpt-4o', 'o3-mini'][cityHash64(n, 'm') % 3 + 1] AS request_model, request_model AS response_model,
                100 + cityHash64(n, 'i') % 4000 AS input_tokens, 10 + cityHash64(n, 'o') % 800 AS output_tokens,
                intDiv(input_tokens, 2) AS cache_read_tokens, 0 AS cache_write_tokens, 0 AS reasoning_tokens,
                'provider' AS usage_source,
                if(cityHash64(n, 'u') % 50 = 0, NULL, cost_input_usd + cost_cache_read_usd + cost_output_usd) AS cost_usd,
                toDecimal128(input_tokens - cache_read_tokens, 12) * toDecimal128('0.00000015', 12) AS cost_input_usd,
                toDecimal128(cache_read_tokens, 12) * toDecimal128('0.000000075', 12) AS cost_cache_read_usd,
                toDecimal128(0, 12) AS cost_cache_write_usd,
                toDecimal128(output_tokens, 12) * toDecimal128('0.0000006', 12) AS cost_output_usd,
                toDecimal128(0, 12) AS cost_other_usd,
                if(cost_usd IS NULL, 'unpriced', 'priced') AS cost_status, 'bench' AS price_version,
                if(cityHash64(n, 'r') % 10 = 0, toDecimal128('0.002', 12), NULL) AS revenue_usd,
                'off' AS cache_result, toDecimal128(0, 12) AS saved_usd, '' AS route_from_model, 'allow' AS limit_action,
                (cityHash64(n, 'd') % 5000) / 10.0 AS duration_ms, '' AS error_type, false AS stream
            FROM (SELECT number + {offset} AS n, cityHash64(number + {offset}, 'c') % {args.customers} AS customer_no
                  FROM numbers({count}))
        """, settings={"insert_deduplication_token": f"bench-{offset}"})
        print(f"  {offset + count:>12,} rows  {time.perf_counter() - began:6.1f} s", flush=True)
    months = sorted({(START + timedelta(d)).replace(day=1) for d in range(args.days)})
    for month in months:
        client.command(f"""
            INSERT INTO {DATABASE}.revenue_events (customer, period_start, period_end, feature, tier, amount_usd, source, source_line, imported_at)
            SELECT concat('customer-', toString(number)), toDate('{month}'), toLastDayOfMonth(toDate('{month}')), '',
                   ['free', 'pro', 'team', 'enterprise'][number % 4 + 1], toDecimal128([0, 99, 499, 1999][number % 4 + 1], 12),
                   'bench', 0, now64(6)
            FROM numbers({args.customers})
        """)
    return time.perf_counter() - began


def sizes(client) -> str:
    rows = client.query(
        "SELECT table, sum(rows), formatReadableSize(sum(bytes_on_disk)) FROM system.parts "
        "WHERE database = {db:String} AND active GROUP BY table ORDER BY table",
        parameters={"db": DATABASE},
    ).result_rows
    return "  ".join(f"{table}: {count:,} rows ({size})" for table, count, size in rows)


ROLLUPS = ("llm_calls_daily", "llm_calls_cost_daily", "llm_calls_waterfall_daily")
"""The rollups the report queries read (margin_daily reads llm_calls_waterfall_daily)."""


def create_raw_views(client) -> None:
    """``*_raw`` views that aggregate llm_calls on every query, with the rollups' shape."""
    for rollup in ROLLUPS:
        select = schema.render(f"{rollup}_mv.sql", database=DATABASE, on_cluster="", local="")
        select = select[select.index("AS SELECT") + 3:]
        client.command(f"CREATE VIEW IF NOT EXISTS {DATABASE}.{rollup}_raw AS {select}")
    view = schema.render("margin_daily_view.sql", database=DATABASE, on_cluster="")
    view = view.replace(f"{DATABASE}.margin_daily ", f"{DATABASE}.margin_daily_raw ")
    for rollup in ROLLUPS:
        view = re.sub(rf"\b{DATABASE}\.{rollup}\b", f"{DATABASE}.{rollup}_raw", view)
    client.command(view)


QUERIES = {
    "margin per feature": lambda c, s, e: margin.margin_by(c, "feature", start=s, end=e, database=DATABASE),
    "margin per tier": lambda c, s, e: margin.margin_by(c, "tier", start=s, end=e, database=DATABASE),
    "margin per customer": lambda c, s, e: margin.margin_by(c, "customer", start=s, end=e, database=DATABASE),
    "margin per cohort": lambda c, s, e: margin.margin_by(c, "cohort", start=s, end=e, database=DATABASE),
    "margin total": lambda c, s, e: margin.margin_by(c, "all", start=s, end=e, database=DATABASE),
    "daily + rolling 3d/7d": lambda c, s, e: margin.daily_margin(c, start=s, end=e, level="feature", database=DATABASE),
    "weekly + 4w trailing": lambda c, s, e: margin.weekly_margin(c, start=s, end=e, level="feature", database=DATABASE),
    "cost map (avg, P95)": lambda c, s, e: margin.cost_map(c, start=s, end=e, database=DATABASE),
    "customer scatter": lambda c, s, e: margin.customer_scatter(c, start=s, end=e, database=DATABASE),
    "top negative customers": lambda c, s, e: margin.negative_margin_customers(c, start=s, end=e, database=DATABASE),
}


class RawClient:
    """A client whose queries read the ``*_raw`` views instead of the rollups."""

    def __init__(self, client) -> None:
        self._client = client

    def query(self, sql: str, parameters=None):
        for name in ("margin_daily", *ROLLUPS):
            sql = re.sub(rf"`{DATABASE}`\.{name}\b", f"`{DATABASE}`.{name}_raw", sql)
        return self._client.query(sql, parameters=parameters)


def report(client, args) -> None:
    end = START + timedelta(days=args.days - 1)
    start = max(START, end - timedelta(days=args.report_days - 1))
    raw = RawClient(client)
    print(f"\nreport range {start}..{end}")
    print(f"{'query':<26} {'rollups (s)':>12} {'CPU (s)':>8} {'raw (s)':>10} {'speed-up':>9}  rows")
    for name, run in QUERIES.items():
        fast, cpu, rows = timed(lambda: run(client, start, end), args.repeat)
        slow, _, raw_rows = timed(lambda: run(raw, start, end), max(1, args.repeat - 2))
        assert rows == raw_rows, name  # the same answer either way
        print(f"{name:<26} {fast:>12.3f} {cpu:>8.3f} {slow:>10.3f} {slow / fast:>8.1f}x  {len(rows)}", flush=True)


def timed(work, repeat: int):
    """Median wall-clock and CPU seconds of ``work`` (chDB runs in this process, so the
    process CPU time is the engine's work, which other processes on the machine cannot inflate)."""
    times, cpu_times, result = [], [], None
    for _ in range(repeat):
        began, cpu_began = time.perf_counter(), time.process_time()
        result = work()
        times.append(time.perf_counter() - began)
        cpu_times.append(time.process_time() - cpu_began)
    return statistics.median(times), statistics.median(cpu_times), result


if __name__ == "__main__":
    main()
