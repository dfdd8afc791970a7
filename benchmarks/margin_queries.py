"""Margin-query latency on N synthetic calls in chDB: raw table vs rollups.

    python benchmarks/margin_queries.py                 # 10,000,000 calls over 30 days
    python benchmarks/margin_queries.py --calls 1000000 --repeat 5
    python benchmarks/margin_queries.py --calls 3000000 --days 365   # a year of history, last 30 days reported

Generates the calls inside the engine (INSERT … SELECT FROM numbers(), in chunks, so the
rollup materialized views fill exactly as they do under the exporter), adds one monthly
subscription per customer (revenue without a feature: every query allocates it by usage),
units of work of 1-5 calls (sharing a feature and customer) with an outcome for 9 in 10, a
cost line per 10 units and a GPU-hosting period cost per month, then times every report query
(the margin views, the waterfall at each level, cost per unit and units by outcome) over the
last --report-days days twice: as shipped (over the rollups) and over the raw rows (the same
SQL with each rollup replaced by a view that aggregates ``llm_calls`` and ``cost_lines``).
Prints one table; the target is < 1 s per query on the rollups.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import clickhouse_connect

from otel_margin import schema
from otel_margin.analysis import margin, units
from otel_margin.analysis.waterfall import waterfall

DATABASE = "bench_margin"
START = date(2024, 5, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_store_arguments(parser)
    parser.add_argument("--report-days", type=int, default=30, help="days the queries cover, the last ones (default 30)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per query; the median is shown")
    parser.add_argument("--no-raw", action="store_true", help="skip the comparison with the raw table (slow at 10 M calls)")
    args = parser.parse_args()
    with store(parser, args) as client:
        create_raw_views(client)
        report(client, args)


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """The synthetic data's shape and where it lives: shared by the margin, alert and dashboard benchmarks."""
    parser.add_argument("--calls", type=int, default=10_000_000, help="synthetic calls (default 10,000,000)")
    parser.add_argument("--days", type=int, default=30, help="days the calls spread over (default 30)")
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=1_000_000, help="rows per INSERT … SELECT")
    parser.add_argument("--path", help="chDB directory, kept afterwards (default: a temporary one, removed)")
    parser.add_argument("--reuse", action="store_true",
                        help="time the data already in --path (generated before; same --calls/--days)")


@contextlib.contextmanager
def store(parser: argparse.ArgumentParser, args):
    """A chDB client on the synthetic data: generated (and its sizes printed) unless --reuse; a
    temporary directory unless --path names one (which is kept)."""
    if args.reuse and not args.path:
        parser.error("--reuse needs --path, the directory of an earlier run")
    path = Path(args.path) if args.path else Path(tempfile.mkdtemp(prefix="margin-bench-"))
    client = clickhouse_connect.get_client(interface="chdb", path=str(path))
    try:
        if args.reuse:
            schema.apply_schema(client, database=DATABASE, ttl_days=0)  # this release's views over the data
        else:
            seconds = generate(client, args)
            print(f"generated {args.calls:,} calls over {args.days} days, {args.customers:,} customers, "
                  f"{args.features} features in {seconds:.1f} s ({args.calls / seconds:,.0f} rows/s incl. rollups)")
        print(sizes(client))
        yield client
    finally:
        client.close()
        if not args.path:
            shutil.rmtree(path, ignore_errors=True)


GENERATED_COLUMNS = (
    "timestamp", "trace_id", "span_id", "service_name", "feature", "tier", "cohort", "customer", "provider",
    "operation", "request_model", "response_model", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens", "usage_source", "cost_usd", "cost_input_usd", "cost_cache_read_usd",
    "cost_cache_write_usd", "cost_output_usd", "cost_other_usd", "cost_status", "price_version", "revenue_usd",
    "cache_result", "saved_usd", "route_from_model", "limit_action", "duration_ms", "error_type", "stream",
    "unit_id", "unit_kind",
)
"""The columns the generator fills, by name: columns added to llm_calls later keep their defaults."""


def generate(client, args) -> float:
    client.command(f"DROP DATABASE IF EXISTS {DATABASE}")
    schema.apply_schema(client, database=DATABASE, ttl_days=0)
    span_seconds = args.days * 86_400
    began = time.perf_counter()
    for offset in range(0, args.calls, args.chunk):
        count = min(args.chunk, args.calls - offset)
        client.command(f"""
            INSERT INTO {DATABASE}.llm_calls ({", ".join(GENERATED_COLUMNS)})
            SELECT
                toDateTime64('{START} 00:00:00', 6, 'UTC') + toIntervalMicrosecond(toUInt64(intDiv(toUInt128(n) * {span_seconds} * 1000000, {args.calls}))) AS timestamp,
                hex(cityHash64(n, 'trace')) AS trace_id, hex(cityHash64(n, 'span')) AS span_id, 'bench' AS service_name,
                concat('feature-', toString(cityHash64(first_call, 'f') % {args.features})) AS feature,
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
                (cityHash64(n, 'd') % 5000) / 10.0 AS duration_ms, '' AS error_type, false AS stream,
                {unit_id(UNIT_OF_CALL)} AS unit_id, {UNIT_KINDS}[{UNIT_OF_CALL} % 3 + 1] AS unit_kind
            FROM (SELECT number + {offset} AS n, {FIRST_CALL_OF_UNIT} AS first_call, cityHash64(first_call, 'c') % {args.customers} AS customer_no
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
    generate_units(client, args, span_seconds)
    return time.perf_counter() - began


UNIT_OF_CALL = "(intDiv(n, 15) * 5 + multiIf(n % 15 < 1, 0, n % 15 < 3, 1, n % 15 < 6, 2, n % 15 < 10, 3, 4))"
"""Units of 1, 2, 3, 4 and 5 consecutive calls in turn (3 calls a unit on average)."""
FIRST_CALL_OF_UNIT = "(intDiv(n, 15) * 15 + multiIf(n % 15 < 1, 0, n % 15 < 3, 1, n % 15 < 6, 3, n % 15 < 10, 6, 10))"
"""The first call of call n's unit: a unit's calls share its feature and customer, as in an application."""
UNIT_KINDS = "['ticket', 'document', 'agent-run']"


def unit_id(number: str) -> str:
    """SQL for the id of unit ``number``: 32 hex digits, as ``otel_margin.unit`` makes them (uuid4().hex),
    so grouping by unit hashes keys as long as a real store's."""
    return f"lower(concat(hex(cityHash64({number}, 'unit')), hex(cityHash64({number}, 'id'))))"


def generate_units(client, args, span_seconds: int) -> None:
    """What units add around the calls: an outcome for 9 units in 10 (the tenth is abandoned), a
    retrieval cost line per 10 units and a human review per 50, and a GPU-hosting period cost per month."""
    units = (args.calls + 14) // 15 * 5
    first_call = "(intDiv(u, 5) * 15 + [0, 1, 3, 6, 10][u % 5 + 1])"
    at = (f"toDateTime64('{START} 00:00:00', 6, 'UTC') + toIntervalMicrosecond(toUInt64(intDiv(toUInt128("
          f"least({first_call}, {args.calls - 1})) * {span_seconds} * 1000000, {args.calls})))")
    who = (f"{unit_id('u')}, {UNIT_KINDS}[u % 3 + 1], "
           f"concat('feature-', toString(cityHash64({first_call}, 'f') % {args.features})), "
           f"concat('customer-', toString(cityHash64({first_call}, 'c') % {args.customers})), '', ''")
    client.command(f"""
        INSERT INTO {DATABASE}.outcomes (timestamp, trace_id, span_id, service_name, unit_id, unit_kind, feature,
                                         customer, tier, cohort, status, revenue_usd, quality)
        SELECT {at} + toIntervalSecond(30), '', hex(cityHash64(u, 'o')), 'bench', {who},
               ['resolved', 'resolved', 'resolved', 'failed', 'escalated'][u % 5 + 1] AS status,
               if(status = 'resolved', toDecimal128('2.00', 12), toDecimal128(0, 12)), NULL
        FROM (SELECT number AS u FROM numbers({units})) WHERE u % 10 != 9
    """, settings={"insert_deduplication_token": "bench-outcomes"})
    client.command(f"""
        INSERT INTO {DATABASE}.cost_lines (timestamp, trace_id, span_id, service_name, unit_id, unit_kind, feature,
                                           customer, tier, cohort, category, amount_usd, description)
        SELECT {at}, '', hex(cityHash64(u, 'l')), 'bench', {who},
               if(u % 50 = 0, 'support', 'orchestration'),
               if(u % 50 = 0, toDecimal128('1.50', 12), toDecimal128('0.0004', 12)), ''
        FROM (SELECT number AS u FROM numbers({units})) WHERE u % 10 = 0
    """, settings={"insert_deduplication_token": "bench-cost-lines"})
    months = sorted({(START + timedelta(d)).replace(day=1) for d in range(args.days)})
    for month in months:
        client.command(f"""
            INSERT INTO {DATABASE}.period_costs (period_start, period_end, category, feature, customer, tier,
                                                 amount_usd, source, source_line, imported_at)
            VALUES ('{month}', toLastDayOfMonth(toDate('{month}')), 'infrastructure', 'feature-0', '', '',
                    toDecimal128('2800', 12), 'bench', 0, now64(6))
        """)


def sizes(client) -> str:
    rows = client.query(
        "SELECT table, sum(rows), formatReadableSize(sum(bytes_on_disk)) FROM system.parts "
        "WHERE database = {db:String} AND active GROUP BY table ORDER BY table",
        parameters={"db": DATABASE},
    ).result_rows
    return "  ".join(f"{table}: {count:,} rows ({size})" for table, count, size in rows)


VIEWS = ("margin_daily", "units")
"""The views over the rollups (``schema.ROLLUP_VIEWS``): margin_daily reads llm_calls_waterfall_daily and
llm_calls_parts_daily, units units_daily."""


def create_raw_views(client) -> None:
    """``*_raw`` views that aggregate the raw rows on every query, with the rollups' shape, and
    ``margin_daily_raw`` and ``units_raw`` over them."""
    for rollup, fillers in schema.ROLLUP_VIEWS.items():
        selects = [schema.view_select(filler, database=DATABASE) for filler in fillers]
        client.command(f"CREATE VIEW IF NOT EXISTS {DATABASE}.{rollup}_raw AS {' UNION ALL '.join(selects)}")
    for name in VIEWS:
        view = schema.render(f"{name}_view.sql", database=DATABASE, on_cluster="")
        view = view.replace(f"{DATABASE}.{name} ", f"{DATABASE}.{name}_raw ")
        for rollup in schema.ROLLUP_VIEWS:
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
    "waterfall total": lambda c, s, e: waterfall(c, level="all", start=s, end=e, database=DATABASE),
    "waterfall per feature": lambda c, s, e: waterfall(c, level="feature", start=s, end=e, database=DATABASE),
    "waterfall per customer": lambda c, s, e: waterfall(c, level="customer", start=s, end=e, database=DATABASE),
    "waterfall per model": lambda c, s, e: waterfall(c, level="model", start=s, end=e, database=DATABASE),
    "waterfall per unit kind": lambda c, s, e: waterfall(c, level="unit_kind", start=s, end=e, database=DATABASE),
    "cost per unit (P50/P95)": lambda c, s, e: units.cost_per_unit(c, start=s, end=e, database=DATABASE),
    "units by outcome": lambda c, s, e: units.outcome_groups(c, start=s, end=e, database=DATABASE),
}


class RawClient:
    """A client whose queries read the ``*_raw`` views instead of the rollups."""

    def __init__(self, client) -> None:
        self._client = client

    def query(self, sql: str, parameters=None):
        for name in (*VIEWS, *schema.ROLLUP_VIEWS):
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
        if args.no_raw:
            print(f"{name:<26} {fast:>12.3f} {cpu:>8.3f} {'-':>10} {'-':>9}  {len(rows)}", flush=True)
            continue
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
