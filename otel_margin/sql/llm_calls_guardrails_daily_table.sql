-- Daily rollup of what the guardrails did, per feature, customer and tier: calls, cache lookups
-- and hits (exact, semantic), what the hits avoided and what the cache's lookups cost, routed calls
-- and their saving, capped and blocked calls. Read by guardrails_query (the report's, the
-- dashboard's and Grafana's guardrail effectiveness) instead of the raw calls. Summing only; a
-- query always sums again. A table made before this rollup holds only the calls stored after it
-- until `otel-margin schema backfill llm_calls_guardrails_daily`.
CREATE TABLE IF NOT EXISTS $database.llm_calls_guardrails_daily$local$on_cluster
(
    day                  Date,
    feature              LowCardinality(String),
    customer             String,
    tier                 LowCardinality(String),
    calls                UInt64,
    cache_lookups        UInt64,
    exact_hits           UInt64,
    semantic_hits        UInt64,
    cache_saved_usd      Decimal(38, 12),
    cache_cost_usd       Decimal(38, 12),
    routed_calls         UInt64,
    route_saved_usd      Decimal(38, 12),
    capped_calls         UInt64,
    blocked_calls        UInt64
)
ENGINE = ${replicated}SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, feature, customer, tier)
SETTINGS non_replicated_deduplication_window = 10000
