-- A feature's gross margin over the last 7 days (today included) is in its yellow band:
-- at or above its floor, below floor + band. Investigate within 48 h.
-- Floors and bands: [features.NAME] / [zones] in the policy file. A feature under an
-- unexpired strategic exception is left alone. trend: against the 7 days before.
-- driver: revenue per request falling, or the primary cost driver (cost_drivers view).
WITH
    toDate({now:DateTime64(6, 'UTC')}) AS today,
    (x -> concat(if(x >= 0, '+', ''), toString(round(x * 100)), '%')) AS signed,
    windows AS
    (
        SELECT
            feature,
            toFloat64(sumIf(revenue_usd, day > today - 7)) AS revenue_now,
            toFloat64(sumIf(cost_usd, day > today - 7)) AS cost_now,
            sumIf(priced_calls, day > today - 7) AS calls_now,
            toFloat64(sumIf(revenue_usd, day <= today - 7)) AS revenue_before,
            toFloat64(sumIf(cost_usd, day <= today - 7)) AS cost_before,
            sumIf(priced_calls, day <= today - 7) AS calls_before,
            indexOf({floor_features:Array(String)}, feature) AS floor_index,
            if(floor_index > 0, {floor_pcts:Array(Float64)}[floor_index], {default_floor_pct:Float64}) AS floor_pct,
            if(floor_index > 0, {band_pts:Array(Float64)}[floor_index], {default_band_pts:Float64}) AS band_pts
        FROM $database.margin_daily(
            allocate_by = {allocate_by:String}, start = today - 13, end = today, by_day = 1,
            value_features = {value_features:Array(String)}, value_weights = {value_weights:Array(Decimal(38, 12))},
            ai_tiers = {ai_tiers:Array(String)}, ai_share_pcts = {ai_share_pcts:Array(Decimal(38, 12))})
        GROUP BY feature
    )
SELECT
    'margin_7d_yellow' AS rule,
    'yellow' AS severity,
    w.feature AS feature,
    '' AS customer,
    (revenue_now - cost_now) / revenue_now * 100 AS value,
    floor_pct + band_pts AS threshold,
    multiIf(revenue_before <= 0, 'flat',
            abs(value - (revenue_before - cost_before) / revenue_before * 100) < 1, 'flat',
            value > (revenue_before - cost_before) / revenue_before * 100, 'up', 'down') AS trend,
    multiIf(
        revenue_before > 0 AND calls_before > 0
            AND revenue_before / calls_before - revenue_now / calls_now > greatest(d.delta_usd, 0),
        concat('revenue per request ', signed((revenue_now / calls_now) / (revenue_before / calls_before) - 1)),
        d.driver != '', d.driver,
        concat('cost is ', toString(round(cost_now / revenue_now * 100)), '% of revenue (no earlier week to compare)')) AS driver,
    w.floor_pct AS floor_pct,
    w.band_pts AS band_pts
FROM windows AS w
LEFT JOIN $database.cost_drivers(base_start = today - 13, base_end = today - 7,
                                 current_start = today - 6, current_end = today) AS d ON d.feature = w.feature
WHERE revenue_now > 0 AND calls_now >= {min_calls:UInt64}
  AND value >= w.floor_pct AND value < w.floor_pct + w.band_pts
  AND NOT has(arrayMap(e -> e.1, arrayFilter(e -> e.4 >= today, {exceptions:Array(Tuple(String, String, String, Date))})), w.feature)
