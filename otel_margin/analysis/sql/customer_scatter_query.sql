-- Revenue against margin per customer, for a scatter plot. tier is the customer's tier with the most
-- revenue (then the most calls) in the range, summed over its rows first: one argMax per customer
-- over its few tiers, not over every row.
SELECT
    customer,
    argMax(tier, (tier_revenue_usd, tier_calls, tier)) AS tier,
    sum(tier_calls) AS calls,
    sum(tier_unpriced_calls) AS unpriced_calls,
    sum(tier_error_calls) AS error_calls,
    sum(tier_revenue_usd) AS revenue_usd,
    sum(tier_cost_usd) AS cost_usd,
    revenue_usd - cost_usd AS margin_usd,
    if(revenue_usd = 0, NULL, margin_usd * 100 / revenue_usd) AS margin_pct
FROM
(
    SELECT
        customer, tier, sum(calls) AS tier_calls, sum(unpriced_calls) AS tier_unpriced_calls, sum(error_calls) AS tier_error_calls,
        sum(revenue_usd) AS tier_revenue_usd, sum(cost_usd) AS tier_cost_usd
    FROM $database.margin_daily(allocate_by = {allocate_by:String}, start = {start:Date}, end = {end:Date}, by_day = 0,
        value_features = {value_features:Array(String)}, value_weights = {value_weights:Array(Decimal(38, 12))},
        ai_tiers = {ai_tiers:Array(String)}, ai_share_pcts = {ai_share_pcts:Array(Decimal(38, 12))})
    GROUP BY customer, tier
)
GROUP BY customer
ORDER BY revenue_usd DESC, customer
