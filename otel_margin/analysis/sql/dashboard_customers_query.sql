-- Revenue against margin per customer for the dashboard's scatter, with the page's filters
-- bound ('' = any): the `limit` customers with the most revenue (then the most calls), and in
-- every row the number of customers in all (customers_total) so the page says how many it left
-- out. tier is the customer's tier with the most revenue (then calls) in the range.
SELECT
    customer,
    argMax(tier, (day_revenue_usd, day_calls)) AS tier,
    sum(day_calls) AS calls,
    sum(day_unpriced_calls) AS unpriced_calls,
    sum(day_revenue_usd) AS revenue_usd,
    sum(day_cost_usd) AS cost_usd,
    revenue_usd - cost_usd AS margin_usd,
    if(revenue_usd = 0, NULL, margin_usd * 100 / revenue_usd) AS margin_pct,
    count() OVER () AS customers_total
FROM
(
    SELECT
        customer, tier, calls AS day_calls, unpriced_calls AS day_unpriced_calls,
        revenue_usd AS day_revenue_usd, cost_usd AS day_cost_usd
    FROM $database.margin_daily(allocate_by = {allocate_by:String}, start = {start:Date}, end = {end:Date},
            value_features = {value_features:Array(String)}, value_weights = {value_weights:Array(Decimal(38, 12))},
            ai_tiers = {ai_tiers:Array(String)}, ai_share_pcts = {ai_share_pcts:Array(Decimal(38, 12))})
    WHERE ({feature:String} = '' OR feature = {feature:String})
      AND ({tier:String} = '' OR tier = {tier:String})
      AND ({customer:String} = '' OR customer = {customer:String})
)
GROUP BY customer
ORDER BY revenue_usd DESC, calls DESC, customer
LIMIT {limit:UInt32}
