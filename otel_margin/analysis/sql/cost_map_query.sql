-- The cost map per feature from the daily cost rollup: exact average cost per priced call, in
-- total and per component, and the P95 per call (DDSketch: within about one bucket, 2-3 %).
-- Unpriced calls are counted apart and are in no average.
SELECT
    feature,
    sum(calls) AS calls,
    sum(priced_calls) AS priced_calls,
    sum(unpriced_calls) AS unpriced_calls,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(cost_usd) AS cost_usd,
    sum(cost_input_usd) AS cost_input_usd,
    sum(cost_cache_read_usd) AS cost_cache_read_usd,
    sum(cost_cache_write_usd) AS cost_cache_write_usd,
    sum(cost_output_usd) AS cost_output_usd,
    sum(cost_other_usd) AS cost_other_usd,
    if(priced_calls = 0, NULL, cost_usd / priced_calls) AS avg_cost_usd,
    if(priced_calls = 0, NULL, cost_input_usd / priced_calls) AS avg_input_usd,
    if(priced_calls = 0, NULL, cost_cache_read_usd / priced_calls) AS avg_cache_read_usd,
    if(priced_calls = 0, NULL, cost_cache_write_usd / priced_calls) AS avg_cache_write_usd,
    if(priced_calls = 0, NULL, cost_output_usd / priced_calls) AS avg_output_usd,
    if(priced_calls = 0, NULL, cost_other_usd / priced_calls) AS avg_other_usd,
    quantileDDMerge(0.01, 0.95)(cost_usd_p95) AS p95_cost_usd,
    quantileDDMerge(0.01, 0.95)(cost_input_usd_p95) AS p95_input_usd,
    quantileDDMerge(0.01, 0.95)(cost_cache_read_usd_p95) AS p95_cache_read_usd,
    quantileDDMerge(0.01, 0.95)(cost_cache_write_usd_p95) AS p95_cache_write_usd,
    quantileDDMerge(0.01, 0.95)(cost_output_usd_p95) AS p95_output_usd,
    quantileDDMerge(0.01, 0.95)(cost_other_usd_p95) AS p95_other_usd
FROM $database.llm_calls_cost_daily
WHERE day >= {start:Date} AND day <= {end:Date}
  AND ({feature:String} = '' OR feature = {feature:String})
GROUP BY feature
ORDER BY cost_usd DESC, feature
