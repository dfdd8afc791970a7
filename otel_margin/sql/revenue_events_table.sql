-- Subscription and invoice revenue, imported by `otel-margin revenue import`.
-- One live row per (customer, period_start, period_end, feature); a re-import with a new
-- amount or tier inserts a newer version, and readers use FINAL (the table is small).
-- feature = '' means "not attributed": margin_daily allocates it by usage share.
-- Not partitioned, so one import is one atomic insert.
CREATE TABLE IF NOT EXISTS $database.revenue_events$local$on_cluster
(
    customer      String,
    period_start  Date,
    period_end    Date,
    feature       LowCardinality(String),
    tier          LowCardinality(String),
    amount_usd    Decimal(38, 12),
    source        String,
    source_line   UInt32,
    imported_at   DateTime64(6, 'UTC')
)
ENGINE = ${replicated}ReplacingMergeTree(imported_at)
ORDER BY (customer, period_start, period_end, feature)
SETTINGS non_replicated_deduplication_window = 1000
