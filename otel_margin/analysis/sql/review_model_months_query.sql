-- Cost per calendar month, provider and model from the hourly rollup (kept forever, unlike the
-- raw calls), for the quarterly review's 12-month trend and the self-hosting crossover.
SELECT
    toStartOfMonth(hour) AS month,
    provider,
    response_model AS model,
    sum(calls) AS calls,
    sum(priced_calls) AS priced_calls,
    sum(unpriced_calls) AS unpriced_calls,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cost_usd) AS cost_usd
FROM $database.llm_calls_hourly
WHERE hour >= toDateTime({start:Date}, 'UTC') AND hour < toDateTime({end:Date} + 1, 'UTC')
GROUP BY month, provider, model
ORDER BY provider, model, month
