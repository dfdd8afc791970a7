-- Hourly rollup per feature, tier, provider and model: counts, tokens and exact cost sums per
-- component, for charts and alerts by the hour. Summing only; a query always sums again.
CREATE TABLE IF NOT EXISTS $database.llm_calls_hourly$local$on_cluster
(
    hour                 DateTime('UTC'),
    feature              LowCardinality(String),
    tier                 LowCardinality(String),
    provider             LowCardinality(String),
    response_model       LowCardinality(String),
    calls                UInt64,
    priced_calls         UInt64,
    unpriced_calls       UInt64,
    error_calls          UInt64,
    cache_hits           UInt64,
    input_tokens         UInt64,
    output_tokens        UInt64,
    cache_read_tokens    UInt64,
    cache_write_tokens   UInt64,
    reasoning_tokens     UInt64,
    cost_usd             Decimal(38, 12),
    cost_input_usd       Decimal(38, 12),
    cost_cache_read_usd  Decimal(38, 12),
    cost_cache_write_usd Decimal(38, 12),
    cost_output_usd      Decimal(38, 12),
    cost_other_usd       Decimal(38, 12),
    revenue_usd          Decimal(38, 12),
    saved_usd            Decimal(38, 12),
    duration_ms          Float64
)
ENGINE = ${replicated}SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, feature, tier, provider, response_model)
SETTINGS non_replicated_deduplication_window = 10000
