-- The dashboard's real-time view for one customer, from the raw calls (the hourly rollup has
-- no customer): the same columns as dashboard_realtime_query, over the calls since `since`.
SELECT
    toStartOfHour(call.timestamp) AS hour, call.feature AS feature,
    count() AS calls,
    countIf(call.cost_usd IS NOT NULL) AS priced_calls,
    countIf(call.cost_usd IS NULL AND call.cost_status != 'error') AS unpriced_calls,
    sum(ifNull(call.cost_usd, toDecimal128(0, 12))) AS cost_usd,
    sum(ifNull(call.revenue_usd, toDecimal128(0, 12))) AS revenue_usd
FROM $database.llm_calls AS call
WHERE call.timestamp >= {since:DateTime('UTC')}
  AND call.customer = {customer:String}
  AND ({feature:String} = '' OR call.feature = {feature:String})
  AND ({tier:String} = '' OR call.tier = {tier:String})
GROUP BY hour, feature
ORDER BY feature, hour
