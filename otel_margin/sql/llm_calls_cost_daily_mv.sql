-- Components are sketched over priced calls only (NULL is skipped), like the total.
CREATE MATERIALIZED VIEW IF NOT EXISTS $database.llm_calls_cost_daily_mv$on_cluster
TO $database.llm_calls_cost_daily$local
AS SELECT
    toDate(call.timestamp) AS day,
    feature,
    count() AS calls,
    countIf(call.cost_usd IS NOT NULL) AS priced_calls,
    countIf(call.cost_usd IS NULL AND call.cost_status != 'error') AS unpriced_calls,
    sum(call.input_tokens) AS input_tokens,
    sum(call.output_tokens) AS output_tokens,
    sum(call.cache_read_tokens) AS cache_read_tokens,
    sum(call.cache_write_tokens) AS cache_write_tokens,
    sum(ifNull(call.cost_usd, toDecimal128(0, 12))) AS cost_usd,
    sum(call.cost_input_usd) AS cost_input_usd,
    sum(call.cost_cache_read_usd) AS cost_cache_read_usd,
    sum(call.cost_cache_write_usd) AS cost_cache_write_usd,
    sum(call.cost_output_usd) AS cost_output_usd,
    sum(call.cost_other_usd) AS cost_other_usd,
    quantileDDState(0.01, 0.95)(toFloat64(call.cost_usd)) AS cost_usd_p95,
    quantileDDState(0.01, 0.95)(if(call.cost_usd IS NULL, NULL, toFloat64(call.cost_input_usd))) AS cost_input_usd_p95,
    quantileDDState(0.01, 0.95)(if(call.cost_usd IS NULL, NULL, toFloat64(call.cost_cache_read_usd))) AS cost_cache_read_usd_p95,
    quantileDDState(0.01, 0.95)(if(call.cost_usd IS NULL, NULL, toFloat64(call.cost_cache_write_usd))) AS cost_cache_write_usd_p95,
    quantileDDState(0.01, 0.95)(if(call.cost_usd IS NULL, NULL, toFloat64(call.cost_output_usd))) AS cost_output_usd_p95,
    quantileDDState(0.01, 0.95)(if(call.cost_usd IS NULL, NULL, toFloat64(call.cost_other_usd))) AS cost_other_usd_p95
FROM $database.llm_calls$local AS call
GROUP BY day, feature
