-- Daily rollup of the calls for the margin waterfall: per feature, customer, tier, cohort, unit
-- kind and model, the calls' cost split into inference (LLM calls other than embeddings) and
-- orchestration (embedding calls), inference calls (the default allocation weight) and usage
-- revenue (failed calls earn none). margin_daily reads it. Summing only; a query always sums again.
-- A table made before this rollup holds only the calls stored after it until
-- `otel-margin schema backfill llm_calls_waterfall_daily` fills it from llm_calls.
CREATE TABLE IF NOT EXISTS $database.llm_calls_waterfall_daily$local$on_cluster
(
    day                  Date,
    feature              LowCardinality(String),
    customer             String,
    tier                 LowCardinality(String),
    cohort               LowCardinality(String),
    unit_kind            LowCardinality(String),
    model                LowCardinality(String),
    calls                UInt64,
    inference_calls      UInt64,
    priced_calls         UInt64,
    unpriced_calls       UInt64,
    error_calls          UInt64,
    input_tokens         UInt64,
    output_tokens        UInt64,
    inference_usd        Decimal(38, 12),
    orchestration_usd    Decimal(38, 12),
    revenue_usd          Decimal(38, 12)
)
ENGINE = ${replicated}SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, customer, feature, tier, cohort, unit_kind, model)
SETTINGS non_replicated_deduplication_window = 10000
