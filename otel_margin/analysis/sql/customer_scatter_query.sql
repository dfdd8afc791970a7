-- Revenue against margin per customer, for a scatter plot. tier is the customer's tier
-- with the most revenue (then the most calls) in the range.
SELECT
    customer,
    argMax(tier, (day_revenue_usd, day_calls)) AS tier,
    sum(day_calls) AS calls,
    sum(day_unpriced_calls) AS unpriced_calls,
    sum(day_error_calls) AS error_calls,
    sum(day_revenue_usd) AS revenue_usd,
    sum(day_cost_usd) AS cost_usd,
    revenue_usd - cost_usd AS margin_usd,
    if(revenue_usd = 0, NULL, margin_usd * 100 / revenue_usd) AS margin_pct
FROM
(
    SELECT
        customer, tier, calls AS day_calls, unpriced_calls AS day_unpriced_calls, error_calls AS day_error_calls,
        revenue_usd AS day_revenue_usd, cost_usd AS day_cost_usd
    FROM $database.margin_daily(allocate_by = {allocate_by:String}, start = {start:Date}, end = {end:Date}, by_day = 0,
        value_features = {value_features:Array(String)}, value_weights = {value_weights:Array(Decimal(38, 12))},
        ai_tiers = {ai_tiers:Array(String)}, ai_share_pcts = {ai_share_pcts:Array(Decimal(38, 12))})
)
GROUP BY customer
ORDER BY revenue_usd DESC, customer
