-- Daily margin per key with rolling 3-day and 7-day margins (calendar days: a day without
-- rows contributes nothing, it does not shift the window). Reads 6 days before start so the
-- first days' windows are full.
-- $key is the level's column, or 'all' for one key (filled in from a known level: margin.level_key).
SELECT *
FROM
(
    SELECT
        day, key, calls, unpriced_calls, error_calls, revenue_usd, cost_usd,
        revenue_usd - cost_usd AS margin_usd,
        sum(revenue_usd) OVER days_3 AS revenue_3d_usd,
        sum(cost_usd) OVER days_3 AS cost_3d_usd,
        sum(revenue_usd) OVER days_7 AS revenue_7d_usd,
        sum(cost_usd) OVER days_7 AS cost_7d_usd
    FROM
    (
        SELECT
            day,
            $key AS key,
            sum(calls) AS calls,
            sum(unpriced_calls) AS unpriced_calls,
            sum(error_calls) AS error_calls,
            sum(revenue_usd) AS revenue_usd,
            sum(cost_usd) AS cost_usd
        FROM $database.margin_daily(allocate_by = {allocate_by:String}, start = {start:Date} - 6, end = {end:Date}, by_day = 1,
        value_features = {value_features:Array(String)}, value_weights = {value_weights:Array(Decimal(38, 12))},
        ai_tiers = {ai_tiers:Array(String)}, ai_share_pcts = {ai_share_pcts:Array(Decimal(38, 12))})
        WHERE ({feature:String} = '' OR feature = {feature:String})
        GROUP BY day, key
    )
    WINDOW
        days_3 AS (PARTITION BY key ORDER BY day RANGE BETWEEN 2 PRECEDING AND CURRENT ROW),
        days_7 AS (PARTITION BY key ORDER BY day RANGE BETWEEN 6 PRECEDING AND CURRENT ROW)
)
WHERE day >= {start:Date}
ORDER BY key, day
