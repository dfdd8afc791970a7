-- Daily rollup per feature, customer, tier and cohort: the base of every margin view.
-- Summing only; a query always sums again (rows of one key merge whenever ClickHouse likes).
CREATE TABLE IF NOT EXISTS $database.llm_calls_daily$local$on_cluster
(
    day                  Date,
    feature              LowCardinality(String),
    customer             String,
    tier                 LowCardinality(String),
    cohort               LowCardinality(String),
    calls                UInt64,
    priced_calls         UInt64,
    unpriced_calls       UInt64,
    error_calls          UInt64,
    input_tokens         UInt64,
    output_tokens        UInt64,
    cache_read_tokens    UInt64,
    cache_write_tokens   UInt64,
    cost_usd             Decimal(38, 12),
    cost_input_usd       Decimal(38, 12),
    cost_cache_read_usd  Decimal(38, 12),
    cost_cache_write_usd Decimal(38, 12),
    cost_output_usd      Decimal(38, 12),
    cost_other_usd       Decimal(38, 12),
    revenue_usd          Decimal(38, 12),
    saved_usd            Decimal(38, 12)
)
ENGINE = ${replicated}SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, feature, customer, tier, cohort)
SETTINGS non_replicated_deduplication_window = 10000
