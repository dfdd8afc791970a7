CREATE MATERIALIZED VIEW IF NOT EXISTS $database.llm_calls_daily_mv$on_cluster
TO $database.llm_calls_daily$local
AS SELECT
    toDate(timestamp) AS day,
    feature,
    customer,
    tier,
    cohort,
    count() AS calls,
    countIf(cost_usd IS NOT NULL) AS priced_calls,
    countIf(cost_usd IS NULL) AS unpriced_calls,
    countIf(error_type != '') AS error_calls,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(ifNull(cost_usd, toDecimal128(0, 12))) AS cost_usd,
    sum(cost_input_usd) AS cost_input_usd,
    sum(cost_cache_read_usd) AS cost_cache_read_usd,
    sum(cost_cache_write_usd) AS cost_cache_write_usd,
    sum(cost_output_usd) AS cost_output_usd,
    sum(cost_other_usd) AS cost_other_usd,
    sum(ifNull(revenue_usd, toDecimal128(0, 12))) AS revenue_usd,
    sum(saved_usd) AS saved_usd
FROM $database.llm_calls$local
GROUP BY day, feature, customer, tier, cohort
