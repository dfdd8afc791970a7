-- Cost per week (Monday start) and feature from the daily rollup, for the review's cost trends:
-- priced calls and their exact cost (unpriced calls are counted apart, never priced at 0).
SELECT
    toMonday(day) AS week,
    feature,
    sum(calls) AS calls,
    sum(priced_calls) AS priced_calls,
    sum(unpriced_calls) AS unpriced_calls,
    sum(cost_usd) AS cost_usd
FROM $database.llm_calls_daily
WHERE day >= {start:Date} AND day <= {end:Date}
GROUP BY week, feature
ORDER BY feature, week
