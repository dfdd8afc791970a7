-- Weekly margin (weeks start on Monday) per key, with 4-week trailing figures over the
-- week and the 3 weeks before it: the average weekly margin in dollars (over the weeks
-- that have rows) and the pooled margin % of those weeks (sum of margin / sum of revenue).
-- $key is the level's column, or 'all' for one key (filled in from a known level: margin.level_key).
SELECT *
FROM
(
    SELECT
        week, key, calls, unpriced_calls, error_calls, revenue_usd, cost_usd,
        revenue_usd - cost_usd AS margin_usd,
        sum(revenue_usd) OVER weeks_4 AS revenue_4w_usd,
        sum(cost_usd) OVER weeks_4 AS cost_4w_usd,
        count() OVER weeks_4 AS weeks_4w
    FROM
    (
        SELECT
            toMonday(day) AS week,
            $key AS key,
            sum(calls) AS calls,
            sum(unpriced_calls) AS unpriced_calls,
            sum(error_calls) AS error_calls,
            sum(revenue_usd) AS revenue_usd,
            sum(cost_usd) AS cost_usd
        FROM $database.margin_daily(allocate_by = {allocate_by:String}, start = toMonday({start:Date}) - 21, end = {end:Date}, by_day = 1,
        value_features = {value_features:Array(String)}, value_weights = {value_weights:Array(Decimal(38, 12))},
        ai_tiers = {ai_tiers:Array(String)}, ai_share_pcts = {ai_share_pcts:Array(Decimal(38, 12))})
        WHERE ({feature:String} = '' OR feature = {feature:String})
        GROUP BY week, key
    )
    WINDOW weeks_4 AS (PARTITION BY key ORDER BY week RANGE BETWEEN 21 PRECEDING AND CURRENT ROW)
)
WHERE week >= toMonday({start:Date})
ORDER BY key, week
