-- Daily rollup of the calls per allocation part: per customer, feature, tier, cohort and unit kind
-- (no model: what a seat or a GPU pays for is not a model), the weights margin_daily and
-- period_costs_allocated split subscription revenue and period costs by. Summing only; a query
-- always sums again. Like llm_calls_waterfall_daily without its model, so about a third of its rows.
-- A table made before this rollup holds only the calls stored after it until
-- `otel-margin schema backfill llm_calls_parts_daily` fills it from llm_calls.
CREATE TABLE IF NOT EXISTS $database.llm_calls_parts_daily$local$on_cluster
(
    day                  Date,
    customer             String,
    feature              LowCardinality(String),
    tier                 LowCardinality(String),
    cohort               LowCardinality(String),
    unit_kind            LowCardinality(String),
    calls                UInt64,
    inference_calls      UInt64,
    tokens               UInt64,
    cost_usd             Decimal(38, 12)
)
ENGINE = ${replicated}SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, customer, feature, tier, cohort, unit_kind)
SETTINGS non_replicated_deduplication_window = 10000
