-- llm_calls_parts_daily keeps a projection (llm_calls_parts_daily_projection.sql): a SummingMergeTree
-- table may have one only when its merges say what to do with it. 'rebuild': a merge rebuilds the
-- merged part's projection from the summed rows. A no-op when already set.
ALTER TABLE $database.llm_calls_parts_daily$local$on_cluster
    MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild'
