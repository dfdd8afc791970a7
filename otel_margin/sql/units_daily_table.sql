-- Daily rollup of the units of work: per day, unit and attribution, what the unit spent by
-- waterfall category, in how many calls, from when to when. The units view groups it by unit, so
-- the units queries read about one row per unit and day instead of one per call (3.3 M instead
-- of 10 M at 10 M calls). Filled from llm_calls (units_daily_calls_mv) and cost_lines
-- (units_daily_cost_lines_mv); outcomes stay in their own table (a newer recording replaces one).
-- A unit's calls share its attribution in practice, so the attribution columns are part of the
-- key (plain columns, cheap to read) rather than aggregates. in_unit is 0 for a call or cost line
-- made outside any unit (its own unit: unit_id is its span id). A table made before this rollup holds
-- only the calls and cost lines stored after it until `otel-margin schema backfill units_daily`.
CREATE TABLE IF NOT EXISTS $database.units_daily$local$on_cluster
(
    day                  Date,
    unit_id              String CODEC(ZSTD(1)),
    in_unit              UInt8,
    unit_kind            LowCardinality(String),
    feature              LowCardinality(String),
    customer             String CODEC(ZSTD(1)),
    tier                 LowCardinality(String),
    first_at             SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    last_at              SimpleAggregateFunction(max, DateTime64(6, 'UTC')),
    calls                SimpleAggregateFunction(sum, UInt64),
    inference_usd        SimpleAggregateFunction(sum, Decimal(38, 12)),
    orchestration_usd    SimpleAggregateFunction(sum, Decimal(38, 12)),
    infrastructure_usd   SimpleAggregateFunction(sum, Decimal(38, 12)),
    support_usd          SimpleAggregateFunction(sum, Decimal(38, 12))
)
ENGINE = ${replicated}AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, unit_id, in_unit, unit_kind, feature, customer, tier)
SETTINGS non_replicated_deduplication_window = 10000
