-- Small generation calls per feature, provider and model: priced, successful calls with fewer
-- than {small_output_tokens} output tokens that no guardrail already served or routed, with
-- their summed tokens and exact cost (what a cheaper model of the same provider could carry).
SELECT
    feature,
    provider,
    response_model AS model,
    count() AS calls,
    sum(input_tokens) AS input_tokens_sum,
    sum(output_tokens) AS output_tokens_sum,
    sum(cache_read_tokens) AS cache_read_tokens_sum,
    sum(cache_write_tokens) AS cache_write_tokens_sum,
    sum(reasoning_tokens) AS reasoning_tokens_sum,
    sum(cost_usd) AS cost_usd_sum
FROM $database.llm_calls
WHERE toDate(timestamp) >= {start:Date} AND toDate(timestamp) <= {end:Date}
  AND operation IN ('chat', 'text_completion', 'generate_content')
  AND output_tokens < {small_output_tokens:UInt64}
  AND cost_usd IS NOT NULL AND error_type = '' AND route_from_model = ''
  AND cache_result NOT IN ('exact', 'semantic', 'hit')
GROUP BY feature, provider, model
ORDER BY cost_usd_sum DESC, feature, provider, model
