-- The margin waterfall per level ('all' | 'feature' | 'tier' | 'customer' | 'cohort' | 'model' |
-- 'unit_kind') over a date range: revenue by source (usage, outcome, subscription) and cost of goods
-- by category (inference, orchestration, infrastructure, support); gross margin = revenue minus
-- all four. gross_margin_pct is NULL without revenue. Worst gross margin first.
-- $key is the level's column, or 'all' for one key (filled in from a known level: margin.level_key).
SELECT
    $key AS key,
    sum(calls) AS calls,
    sum(inference_calls) AS inference_calls,
    sum(unpriced_calls) AS unpriced_calls,
    sum(error_calls) AS error_calls,
    sum(usage_revenue_usd) AS usage_revenue_usd,
    sum(outcome_revenue_usd) AS outcome_revenue_usd,
    sum(subscription_revenue_usd) AS subscription_revenue_usd,
    sum(revenue_usd) AS revenue_usd,
    sum(inference_usd) AS inference_usd,
    sum(orchestration_usd) AS orchestration_usd,
    sum(infrastructure_usd) AS infrastructure_usd,
    sum(support_usd) AS support_usd,
    sum(cost_usd) AS cost_usd,
    revenue_usd - cost_usd AS gross_margin_usd,
    if(revenue_usd = 0, NULL, gross_margin_usd * 100 / revenue_usd) AS gross_margin_pct
FROM $database.margin_daily(allocate_by = {allocate_by:String}, start = {start:Date}, end = {end:Date}, by_day = 0,
        value_features = {value_features:Array(String)}, value_weights = {value_weights:Array(Decimal(38, 12))},
        ai_tiers = {ai_tiers:Array(String)}, ai_share_pcts = {ai_share_pcts:Array(Decimal(38, 12))})
WHERE ({feature:String} = '' OR feature = {feature:String})
GROUP BY key
ORDER BY gross_margin_usd, key
