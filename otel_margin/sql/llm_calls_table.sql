-- One row per LLM call (one span). Written by the exporter, or derived from the collector's
-- otel_traces by llm_calls_otel_traces_mv. Money is exact: Decimal(38, 12) dollars.
-- cost_usd is NULL for an unpriced call (never 0); its components are 0 then.
-- unit_id / unit_kind: the unit of work (otel_margin.unit); a call outside any unit is its own
-- unit (unit_id = span_id, unit_kind = ''). Tables made before units get both columns from
-- llm_calls_units_alter.sql (rows stored before read unit_id = span_id, the default).
-- request_hash: 64 bits of the request's canonical form (margin.request.hash; 0 = none): equal on
-- calls that asked the identical thing (llm_calls_request_hash_alter.sql upgrades older tables).
-- cache_cost_usd: what the cache itself spent on this call's lookup (a provider embedding; 0 for
-- the built-in CPU embedder). It only nets what the cache saved: the embedding is a row of its own
-- (orchestration), so cost is never cost_usd + cache_cost_usd (llm_calls_cache_cost_alter.sql
-- upgrades older tables).
CREATE TABLE IF NOT EXISTS $database.llm_calls$local$on_cluster
(
    timestamp            DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    trace_id             String CODEC(ZSTD(1)),
    span_id              String CODEC(ZSTD(1)),
    service_name         LowCardinality(String),
    feature              LowCardinality(String),
    tier                 LowCardinality(String),
    cohort               LowCardinality(String),
    customer             String CODEC(ZSTD(1)),
    unit_id              String DEFAULT span_id CODEC(ZSTD(1)),
    unit_kind            LowCardinality(String),
    provider             LowCardinality(String),
    operation            LowCardinality(String),
    request_model        LowCardinality(String),
    response_model       LowCardinality(String),
    input_tokens         UInt64 CODEC(T64, ZSTD(1)),
    output_tokens        UInt64 CODEC(T64, ZSTD(1)),
    cache_read_tokens    UInt64 CODEC(T64, ZSTD(1)),
    cache_write_tokens   UInt64 CODEC(T64, ZSTD(1)),
    reasoning_tokens     UInt64 CODEC(T64, ZSTD(1)),
    usage_source         LowCardinality(String),
    cost_usd             Nullable(Decimal(38, 12)) CODEC(ZSTD(1)),
    cost_input_usd       Decimal(38, 12) CODEC(ZSTD(1)),
    cost_cache_read_usd  Decimal(38, 12) CODEC(ZSTD(1)),
    cost_cache_write_usd Decimal(38, 12) CODEC(ZSTD(1)),
    cost_output_usd      Decimal(38, 12) CODEC(ZSTD(1)),
    cost_other_usd       Decimal(38, 12) CODEC(ZSTD(1)),
    cost_status          LowCardinality(String),
    price_version        LowCardinality(String),
    revenue_usd          Nullable(Decimal(38, 12)) CODEC(ZSTD(1)),
    cache_result         LowCardinality(String),
    saved_usd            Decimal(38, 12) CODEC(ZSTD(1)),
    cache_cost_usd       Decimal(38, 12) CODEC(ZSTD(1)),
    route_from_model     LowCardinality(String),
    limit_action         LowCardinality(String),
    duration_ms          Float64 CODEC(Gorilla, ZSTD(1)),
    error_type           LowCardinality(String),
    stream               Bool,
    request_hash         UInt64 CODEC(ZSTD(1))
)
ENGINE = ${replicated}MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (toDate(timestamp), feature, customer, timestamp)
$ttl
-- A retried batch carries the same insert_deduplication_token and is dropped here.
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000
