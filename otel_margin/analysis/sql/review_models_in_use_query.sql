-- The models calls used in a range, with the price version they were priced with: the candidates
-- a cheaper model is chosen from, and the models whose prices the review checks for changes.
SELECT
    provider,
    operation,
    response_model AS model,
    price_version,
    count() AS calls,
    countIf(cost_usd IS NULL) AS unpriced_calls,
    sum(cost_usd) AS priced_cost_usd
FROM $database.llm_calls
WHERE toDate(timestamp) >= {start:Date} AND toDate(timestamp) <= {end:Date} AND response_model != ''
GROUP BY provider, operation, model, price_version
ORDER BY provider, model, operation, price_version
