-- The upgrade path of an llm_calls table created before units of work: adds unit_id and
-- unit_kind when missing (a no-op otherwise). Rows stored before read unit_id = span_id (each
-- call its own unit) and unit_kind = ''; nothing is rewritten.
ALTER TABLE $database.llm_calls$local$on_cluster
    ADD COLUMN IF NOT EXISTS unit_id String DEFAULT span_id CODEC(ZSTD(1)) AFTER customer,
    ADD COLUMN IF NOT EXISTS unit_kind LowCardinality(String) AFTER unit_id
