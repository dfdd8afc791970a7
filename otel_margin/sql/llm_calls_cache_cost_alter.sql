-- The upgrade path of an llm_calls table created before the cache's own cost was recorded: adds
-- cache_cost_usd when missing (a no-op otherwise). Rows stored before read 0; nothing is rewritten.
ALTER TABLE $database.llm_calls$local$on_cluster
    ADD COLUMN IF NOT EXISTS cache_cost_usd Decimal(38, 12) CODEC(ZSTD(1)) AFTER saved_usd
