-- Gross margin per level ('all' | 'feature' | 'tier' | 'customer' | 'cohort' | 'model' | 'unit_kind') over a
-- date range, with the cost of goods by waterfall category (they add up to cost_usd).
-- margin_pct is NULL when there is no revenue (a margin of nothing is undefined, not 0 %).
-- $key is the level's column, or 'all' for one key (filled in from a known level: margin.level_key).
SELECT
    $key AS key,
    sum(calls) AS calls,
    sum(unpriced_calls) AS unpriced_calls,
    sum(error_calls) AS error_calls,
    sum(revenue_usd) AS revenue_usd,
    sum(cost_usd) AS cost_usd,
    sum(inference_usd) AS inference_usd,
    sum(orchestration_usd) AS orchestration_usd,
    sum(infrastructure_usd) AS infrastructure_usd,
    sum(support_usd) AS support_usd,
    revenue_usd - cost_usd AS margin_usd,
    if(revenue_usd = 0, NULL, margin_usd * 100 / revenue_usd) AS margin_pct
FROM $database.margin_daily(allocate_by = {allocate_by:String}, start = {start:Date}, end = {end:Date}, by_day = 0,
        value_features = {value_features:Array(String)}, value_weights = {value_weights:Array(Decimal(38, 12))},
        ai_tiers = {ai_tiers:Array(String)}, ai_share_pcts = {ai_share_pcts:Array(Decimal(38, 12))})
WHERE ({feature:String} = '' OR feature = {feature:String})
GROUP BY key
ORDER BY margin_usd, key
