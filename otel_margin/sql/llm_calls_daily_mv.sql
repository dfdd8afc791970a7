-- A failed call without a cost (cost_status 'error') is counted in error_calls, not as unpriced:
-- its model may well have a price, it just billed nothing.
CREATE MATERIALIZED VIEW IF NOT EXISTS $database.llm_calls_daily_mv$on_cluster
TO $database.llm_calls_daily$local
AS SELECT
    toDate(call.timestamp) AS day,
    feature,
    customer,
    tier,
    cohort,
    count() AS calls,
    countIf(call.cost_usd IS NOT NULL) AS priced_calls,
    countIf(call.cost_usd IS NULL AND call.cost_status != 'error') AS unpriced_calls,
    countIf(call.error_type != '') AS error_calls,
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
    sum(ifNull(call.revenue_usd, toDecimal128(0, 12))) AS revenue_usd,
    sum(call.saved_usd) AS saved_usd
FROM $database.llm_calls$local AS call
GROUP BY day, feature, customer, tier, cohort
