-- Hourly rollup per feature, tier and model: the cost map (averages and P95) at any scale.
-- P95 comes from a DDSketch (quantileDD, alpha 0.01: within about one bucket, 2-3 %); every sum is exact.
CREATE TABLE IF NOT EXISTS $database.llm_calls_hourly$local$on_cluster
(
    hour                 DateTime('UTC'),
    feature              LowCardinality(String),
    tier                 LowCardinality(String),
    provider             LowCardinality(String),
    response_model       LowCardinality(String),
    calls                SimpleAggregateFunction(sum, UInt64),
    priced_calls         SimpleAggregateFunction(sum, UInt64),
    unpriced_calls       SimpleAggregateFunction(sum, UInt64),
    error_calls          SimpleAggregateFunction(sum, UInt64),
    cache_hits           SimpleAggregateFunction(sum, UInt64),
    input_tokens         SimpleAggregateFunction(sum, UInt64),
    output_tokens        SimpleAggregateFunction(sum, UInt64),
    cache_read_tokens    SimpleAggregateFunction(sum, UInt64),
    cache_write_tokens   SimpleAggregateFunction(sum, UInt64),
    reasoning_tokens     SimpleAggregateFunction(sum, UInt64),
    cost_usd             SimpleAggregateFunction(sum, Decimal(38, 12)),
    cost_input_usd       SimpleAggregateFunction(sum, Decimal(38, 12)),
    cost_cache_read_usd  SimpleAggregateFunction(sum, Decimal(38, 12)),
    cost_cache_write_usd SimpleAggregateFunction(sum, Decimal(38, 12)),
    cost_output_usd      SimpleAggregateFunction(sum, Decimal(38, 12)),
    cost_other_usd       SimpleAggregateFunction(sum, Decimal(38, 12)),
    revenue_usd          SimpleAggregateFunction(sum, Decimal(38, 12)),
    saved_usd            SimpleAggregateFunction(sum, Decimal(38, 12)),
    duration_ms          SimpleAggregateFunction(sum, Float64),
    cost_usd_p95         AggregateFunction(quantileDD(0.01, 0.95), Nullable(Float64)),
    cost_input_usd_p95   AggregateFunction(quantileDD(0.01, 0.95), Nullable(Float64)),
    cost_cache_read_usd_p95  AggregateFunction(quantileDD(0.01, 0.95), Nullable(Float64)),
    cost_cache_write_usd_p95 AggregateFunction(quantileDD(0.01, 0.95), Nullable(Float64)),
    cost_output_usd_p95  AggregateFunction(quantileDD(0.01, 0.95), Nullable(Float64)),
    cost_other_usd_p95   AggregateFunction(quantileDD(0.01, 0.95), Nullable(Float64))
)
ENGINE = ${replicated}AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, feature, tier, provider, response_model)
SETTINGS non_replicated_deduplication_window = 10000
