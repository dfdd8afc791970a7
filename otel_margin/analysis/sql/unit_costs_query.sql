-- Cost per unit of work, per unit kind and feature, over the units with a call or cost line in
-- start..end: how many, their exact total, and the exact P50, P95 and maximum cost of one unit
-- (quantileExact: the element at floor(level * n) of the sorted costs, an actual unit's cost).
-- Calls outside any unit are units of kind ''. Reads units_daily rather than the units view, with
-- the view's rule for a unit's kind and feature (those of its first call or cost line that has
-- them, else its outcome's): only the outcomes of units whose calls and cost lines lack one are
-- read (after every call, so they count only as the fallback), not every outcome; calls made
-- outside any unit (in_unit = 0, each its own unit) have no outcome and are never looked up.
SELECT
    unit_kind,
    feature,
    count() AS units,
    sum(unit_calls) AS calls,
    sum(unit_cost) AS cost_usd,
    quantilesExact(0.5, 0.95)(unit_cost) AS quantiles,
    max(unit_cost) AS max_cost_usd
FROM
(
    SELECT
        argMinIf(kind, at, kind != '') AS unit_kind,
        argMinIf(row_feature, at, row_feature != 'unattributed') AS attributed_feature,
        if(attributed_feature = '', 'unattributed', attributed_feature) AS feature,
        sum(row_calls) AS unit_calls,
        sum(row_cost) AS unit_cost
    FROM
    (
        SELECT
            unit_id, unit_kind AS kind, feature AS row_feature, first_at AS at, calls AS row_calls,
            inference_usd + orchestration_usd + infrastructure_usd + support_usd AS row_cost
        FROM $database.units_daily
        WHERE day >= {start:Date} AND day <= {end:Date}
        UNION ALL
        SELECT unit_id, unit_kind, feature, toDateTime64('2299-12-31 23:59:59', 6, 'UTC'), toUInt64(0), toDecimal128(0, 12)
        FROM $database.outcomes FINAL
        WHERE toDate(timestamp) >= {start:Date}
          AND unit_id GLOBAL IN (SELECT unit_id FROM $database.units_daily
                          WHERE day >= {start:Date} AND day <= {end:Date} AND in_unit = 1
                            AND (unit_kind = '' OR feature = 'unattributed'))
    )
    GROUP BY unit_id
)
WHERE {feature:String} = '' OR feature = {feature:String}
GROUP BY unit_kind, feature
ORDER BY cost_usd DESC, unit_kind, feature
