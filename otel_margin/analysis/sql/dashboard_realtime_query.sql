-- The dashboard's real-time view from the hourly rollup: per hour since `since` and per
-- feature, the calls, priced and unpriced calls, exact cost of the priced calls and revenue
-- on the calls; the page divides them into cost and revenue per request. Filters on feature
-- and tier ('' = any); the hourly rollup has no customer (a customer filter reads
-- dashboard_realtime_customer_query instead).
SELECT
    hour, feature,
    sum(calls) AS calls,
    sum(priced_calls) AS priced_calls,
    sum(unpriced_calls) AS unpriced_calls,
    sum(cost_usd) AS cost_usd,
    sum(revenue_usd) AS revenue_usd
FROM $database.llm_calls_hourly
WHERE hour >= {since:DateTime('UTC')}
  AND ({feature:String} = '' OR feature = {feature:String})
  AND ({tier:String} = '' OR tier = {tier:String})
GROUP BY hour, feature
ORDER BY feature, hour
