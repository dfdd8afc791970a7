-- The fleet path of cost lines: a margin.cost_line span the collector wrote to otel_traces
-- becomes one cost_lines row, as the in-process exporter makes it (exporters/record_rows.py).
CREATE MATERIALIZED VIEW IF NOT EXISTS $database.cost_lines_otel_traces_mv$on_cluster
TO $database.cost_lines$local
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
    SpanAttributes['margin.cost_line.category'] AS category,
    ifNull(toDecimal128OrNull(SpanAttributes['margin.cost_line.usd'], 12), toDecimal128(0, 12)) AS amount_usd,
    SpanAttributes['margin.cost_line.description'] AS description
FROM $traces_database.$traces_table
WHERE SpanAttributes['margin.cost_line.category'] != ''
