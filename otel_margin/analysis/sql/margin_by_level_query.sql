-- Gross margin per level ('all' | 'feature' | 'tier' | 'customer' | 'cohort') over a date range.
-- margin_pct is NULL when there is no revenue (a margin of nothing is undefined, not 0 %).
SELECT
    multiIf({level:String} = 'feature', feature,
            {level:String} = 'tier', tier,
            {level:String} = 'customer', customer,
            {level:String} = 'cohort', cohort,
            'all') AS key,
    sum(calls) AS calls,
    sum(unpriced_calls) AS unpriced_calls,
    sum(error_calls) AS error_calls,
    sum(revenue_usd) AS revenue_usd,
    sum(cost_usd) AS cost_usd,
    revenue_usd - cost_usd AS margin_usd,
    if(revenue_usd = 0, NULL, margin_usd * 100 / revenue_usd) AS margin_pct
FROM $database.margin_daily(allocate_by = {allocate_by:String}, start = {start:Date}, end = {end:Date})
WHERE ({feature:String} = '' OR feature = {feature:String})
GROUP BY key
ORDER BY margin_usd, key
