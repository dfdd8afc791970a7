-- Components are sketched over priced calls only (NULL is skipped), like the total.
CREATE MATERIALIZED VIEW IF NOT EXISTS $database.llm_calls_hourly_mv$on_cluster
TO $database.llm_calls_hourly$local
AS SELECT
    toStartOfHour(timestamp) AS hour,
    feature,
    tier,
    provider,
    response_model,
    count() AS calls,
    countIf(cost_usd IS NOT NULL) AS priced_calls,
    countIf(cost_usd IS NULL) AS unpriced_calls,
    countIf(error_type != '') AS error_calls,
    countIf(cache_result = 'hit') AS cache_hits,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(ifNull(cost_usd, toDecimal128(0, 12))) AS cost_usd,
    sum(cost_input_usd) AS cost_input_usd,
    sum(cost_cache_read_usd) AS cost_cache_read_usd,
    sum(cost_cache_write_usd) AS cost_cache_write_usd,
    sum(cost_output_usd) AS cost_output_usd,
    sum(cost_other_usd) AS cost_other_usd,
    sum(ifNull(revenue_usd, toDecimal128(0, 12))) AS revenue_usd,
    sum(saved_usd) AS saved_usd,
    sum(duration_ms) AS duration_ms,
    quantileDDState(0.01, 0.95)(toFloat64(cost_usd)) AS cost_usd_p95,
    quantileDDState(0.01, 0.95)(if(cost_usd IS NULL, NULL, toFloat64(cost_input_usd))) AS cost_input_usd_p95,
    quantileDDState(0.01, 0.95)(if(cost_usd IS NULL, NULL, toFloat64(cost_cache_read_usd))) AS cost_cache_read_usd_p95,
    quantileDDState(0.01, 0.95)(if(cost_usd IS NULL, NULL, toFloat64(cost_cache_write_usd))) AS cost_cache_write_usd_p95,
    quantileDDState(0.01, 0.95)(if(cost_usd IS NULL, NULL, toFloat64(cost_output_usd))) AS cost_output_usd_p95,
    quantileDDState(0.01, 0.95)(if(cost_usd IS NULL, NULL, toFloat64(cost_other_usd))) AS cost_other_usd_p95
FROM $database.llm_calls$local
GROUP BY hour, feature, tier, provider, response_model
