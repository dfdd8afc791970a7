-- Cost of goods that is not an LLM call, recorded where it is spent (otel_margin.record_cost):
-- one row per line, exact Decimal(38, 12) dollars, in a waterfall category (orchestration,
-- infrastructure, support; inference is llm_calls). A table of its own, not rows of llm_calls:
-- a cost line has no model, tokens or price, and counting it as a call would change every
-- call count, rollup and allocation by calls. Written by the exporter from margin.cost_line
-- spans, or by cost_lines_otel_traces_mv from the collector's otel_traces.
CREATE TABLE IF NOT EXISTS $database.cost_lines$local$on_cluster
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
    category      LowCardinality(String),
    amount_usd    Decimal(38, 12) CODEC(ZSTD(1)),
    description   String CODEC(ZSTD(1))
)
ENGINE = ${replicated}MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (toDate(timestamp), feature, customer, unit_id, timestamp)
SETTINGS non_replicated_deduplication_window = 10000
