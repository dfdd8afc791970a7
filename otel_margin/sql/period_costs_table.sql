-- Fixed cost of goods of a period (GPU hosting, a vector database cluster, observability),
-- imported by `otel-margin costs import`. One live row per (period_start, period_end, category,
-- feature, customer, tier); a re-import with a new amount inserts a newer version, and readers
-- use FINAL (the table is small). feature / customer / tier = '' means "not attributed to one".
-- Not partitioned, so one import is one atomic insert.
CREATE TABLE IF NOT EXISTS $database.period_costs$local$on_cluster
(
    period_start  Date,
    period_end    Date,
    category      LowCardinality(String),
    feature       LowCardinality(String),
    customer      String,
    tier          LowCardinality(String),
    amount_usd    Decimal(38, 12),
    source        String,
    source_line   UInt32,
    imported_at   DateTime64(6, 'UTC')
)
ENGINE = ${replicated}ReplacingMergeTree(imported_at)
ORDER BY (period_start, period_end, category, feature, customer, tier)
SETTINGS non_replicated_deduplication_window = 1000
