-- Daily rollup per feature: the cost map (what one request of a feature costs) at any scale.
-- Exact sums, plus P95 sketches of the total and of each cost component over priced calls:
-- a DDSketch (quantileDD, alpha 0.01: within about one bucket, 2-3 %). The sketches live
-- here only, on the fewest rows that answer the cost map; merging states is exact.
CREATE TABLE IF NOT EXISTS $database.llm_calls_cost_daily$local$on_cluster
(
    day                  Date,
    feature              LowCardinality(String),
    calls                SimpleAggregateFunction(sum, UInt64),
    priced_calls         SimpleAggregateFunction(sum, UInt64),
    unpriced_calls       SimpleAggregateFunction(sum, UInt64),
    input_tokens         SimpleAggregateFunction(sum, UInt64),
    output_tokens        SimpleAggregateFunction(sum, UInt64),
    cache_read_tokens    SimpleAggregateFunction(sum, UInt64),
    cache_write_tokens   SimpleAggregateFunction(sum, UInt64),
    cost_usd             SimpleAggregateFunction(sum, Decimal(38, 12)),
    cost_input_usd       SimpleAggregateFunction(sum, Decimal(38, 12)),
    cost_cache_read_usd  SimpleAggregateFunction(sum, Decimal(38, 12)),
    cost_cache_write_usd SimpleAggregateFunction(sum, Decimal(38, 12)),
    cost_output_usd      SimpleAggregateFunction(sum, Decimal(38, 12)),
    cost_other_usd       SimpleAggregateFunction(sum, Decimal(38, 12)),
    cost_usd_p95         AggregateFunction(quantileDD(0.01, 0.95), Nullable(Float64)),
    cost_input_usd_p95   AggregateFunction(quantileDD(0.01, 0.95), Nullable(Float64)),
    cost_cache_read_usd_p95  AggregateFunction(quantileDD(0.01, 0.95), Nullable(Float64)),
    cost_cache_write_usd_p95 AggregateFunction(quantileDD(0.01, 0.95), Nullable(Float64)),
    cost_output_usd_p95  AggregateFunction(quantileDD(0.01, 0.95), Nullable(Float64)),
    cost_other_usd_p95   AggregateFunction(quantileDD(0.01, 0.95), Nullable(Float64))
)
ENGINE = ${replicated}AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, feature)
SETTINGS non_replicated_deduplication_window = 10000
