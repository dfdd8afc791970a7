-- The fleet path of outcomes: a margin.outcome span the collector wrote to otel_traces becomes
-- one outcomes row, as the in-process exporter makes it (otel_margin/exporters/record_rows.py).
CREATE MATERIALIZED VIEW IF NOT EXISTS $database.outcomes_otel_traces_mv$on_cluster
TO $database.outcomes$local
AS SELECT
    toDateTime64(Timestamp, 6, 'UTC') AS timestamp,
    TraceId AS trace_id,
    SpanId AS span_id,
    ServiceName AS service_name,
    if(SpanAttributes['margin.unit.id'] = '', SpanId, SpanAttributes['margin.unit.id']) AS unit_id,
    SpanAttributes['margin.unit.kind'] AS unit_kind,
    if(SpanAttributes['margin.feature'] = '', 'unattributed', SpanAttributes['margin.feature']) AS feature,
    SpanAttributes['margin.customer'] AS customer,
    SpanAttributes['margin.tier'] AS tier,
    SpanAttributes['margin.cohort'] AS cohort,
    SpanAttributes['margin.outcome.status'] AS status,
    toDecimal128OrNull(SpanAttributes['margin.outcome.revenue.usd'], 12) AS revenue_usd,
    toDecimal128OrNull(SpanAttributes['margin.outcome.quality'], 12) AS quality
FROM $traces_database.$traces_table
WHERE SpanAttributes['margin.outcome.status'] != ''
