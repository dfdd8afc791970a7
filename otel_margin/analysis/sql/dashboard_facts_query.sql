-- The dashboard's margin facts, in one pass over margin_daily for start..end with the page's
-- filters bound ('' = any), grouped two ways (GROUPING SETS; `by` says which):
--   by = 'day':      per day, feature, tier and cohort — the daily, weekly (with its 4-week
--                    trailing window), monthly, waterfall and total views sum these rows;
--   by = 'customer': per customer and tier, page = 1 for the days from page_start on (the
--                    page's period; earlier days are only there for the trailing window) — the
--                    customer scatter (a customer's tier: the one with the most revenue, then calls).
-- Calls, revenue by source and cost of goods by waterfall category; anonymous_calls counts calls
-- recorded without a customer (never hidden: shown as a share).
SELECT
    if(grouping(customer) = 0, 'customer', 'day') AS by,
    day, feature, tier, cohort, customer, page,
    sum(calls) AS calls,
    sum(unpriced_calls) AS unpriced_calls,
    sum(error_calls) AS error_calls,
    sumIf(customer_calls, customer = '') AS anonymous_calls,
    sum(usage_revenue_usd) AS usage_revenue_usd,
    sum(outcome_revenue_usd) AS outcome_revenue_usd,
    sum(subscription_revenue_usd) AS subscription_revenue_usd,
    sum(revenue_usd) AS revenue_usd,
    sum(inference_usd) AS inference_usd,
    sum(orchestration_usd) AS orchestration_usd,
    sum(infrastructure_usd) AS infrastructure_usd,
    sum(support_usd) AS support_usd,
    sum(cost_usd) AS cost_usd
FROM
(
    SELECT *, calls AS customer_calls, toUInt8(day >= {page_start:Date}) AS page
    FROM $database.margin_daily(allocate_by = {allocate_by:String}, start = {start:Date}, end = {end:Date}, by_day = 1,
            value_features = {value_features:Array(String)}, value_weights = {value_weights:Array(Decimal(38, 12))},
            ai_tiers = {ai_tiers:Array(String)}, ai_share_pcts = {ai_share_pcts:Array(Decimal(38, 12))})
    WHERE ({feature:String} = '' OR feature = {feature:String})
      AND ({tier:String} = '' OR tier = {tier:String})
      AND ({customer:String} = '' OR customer = {customer:String})
)
GROUP BY GROUPING SETS ((day, feature, tier, cohort), (customer, tier, page))
SETTINGS group_by_use_nulls = 0
