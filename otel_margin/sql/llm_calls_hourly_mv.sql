CREATE MATERIALIZED VIEW IF NOT EXISTS $database.llm_calls_hourly_mv$on_cluster
TO $database.llm_calls_hourly$local
AS SELECT
    toStartOfHour(call.timestamp) AS hour,
    feature,
    tier,
    provider,
    response_model,
    count() AS calls,
    countIf(call.cost_usd IS NOT NULL) AS priced_calls,
    countIf(call.cost_usd IS NULL AND call.cost_status != 'error') AS unpriced_calls,
    countIf(call.error_type != '') AS error_calls,
    countIf(call.cache_result = 'hit') AS cache_hits,
    sum(call.input_tokens) AS input_tokens,
    sum(call.output_tokens) AS output_tokens,
    sum(call.cache_read_tokens) AS cache_read_tokens,
    sum(call.cache_write_tokens) AS cache_write_tokens,
    sum(call.reasoning_tokens) AS reasoning_tokens,
    sum(ifNull(call.cost_usd, toDecimal128(0, 12))) AS cost_usd,
    sum(call.cost_input_usd) AS cost_input_usd,
    sum(call.cost_cache_read_usd) AS cost_cache_read_usd,
    sum(call.cost_cache_write_usd) AS cost_cache_write_usd,
    sum(call.cost_output_usd) AS cost_output_usd,
    sum(call.cost_other_usd) AS cost_other_usd,
    sum(ifNull(call.revenue_usd, toDecimal128(0, 12))) AS revenue_usd,
    sum(call.saved_usd) AS saved_usd,
    sum(call.duration_ms) AS duration_ms
FROM $database.llm_calls$local AS call
GROUP BY hour, feature, tier, provider, response_model
