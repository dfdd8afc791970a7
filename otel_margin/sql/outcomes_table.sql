-- What each unit of work achieved (otel_margin.outcome), one live row per unit: recording again
-- inserts a newer version (the time it was recorded) and readers use FINAL, so a retried or
-- corrected outcome is counted once. Written by the exporter from margin.outcome spans, or by
-- outcomes_otel_traces_mv from the collector's otel_traces. revenue_usd: the outcome's revenue
-- (given, or the policy's outcome price; NULL when the feature has none).
CREATE TABLE IF NOT EXISTS $database.outcomes$local$on_cluster
(
    timestamp     DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    trace_id      String CODEC(ZSTD(1)),
    span_id       String CODEC(ZSTD(1)),
    service_name  LowCardinality(String),
    unit_id       String CODEC(ZSTD(1)),
    unit_kind     LowCardinality(String),
    feature       LowCardinality(String),
    customer      String CODEC(ZSTD(1)),
    tier          LowCardinality(String),
    cohort        LowCardinality(String),
    status        LowCardinality(String),
    revenue_usd   Nullable(Decimal(38, 12)),
    quality       Nullable(Decimal(38, 12))
)
ENGINE = ${replicated}ReplacingMergeTree(timestamp)
ORDER BY unit_id
SETTINGS non_replicated_deduplication_window = 10000
