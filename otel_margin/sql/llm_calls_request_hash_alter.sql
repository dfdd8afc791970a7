-- The upgrade path of an llm_calls table created before request fingerprints: adds request_hash
-- when missing (a no-op otherwise). Rows stored before read 0 (no fingerprint): the weekly
-- review's repeated-request estimate does not count them.
ALTER TABLE $database.llm_calls$local$on_cluster
    ADD COLUMN IF NOT EXISTS request_hash UInt64 CODEC(ZSTD(1))
