-- A feature's average cost per unit of work (otel_margin.unit: a ticket, a document) over the
-- last 7 days (today included) is more than cost_rise_pct (default 15 %) above the 7 days
-- before, per unit kind. LLM calls only (priced ones); calls outside any unit are left out.
-- Yellow; red from twice the threshold. Both weeks need min_calls priced calls in units.
-- driver: more calls per unit ("calls per unit 2.0→3.1") when that grew more than the cost
-- per call, else the primary cost driver of the cost per call (cost_drivers view).
WITH
    toDate({now:DateTime64(6, 'UTC')}) AS today
SELECT
    'cost_per_unit_wow' AS rule,
    if(value >= 2 * {cost_rise_pct:Float64}, 'red', 'yellow') AS severity,
    u.feature AS feature,
    '' AS customer,
    ((cost_now / units_now) / (cost_before / units_before) - 1) * 100 AS value,
    {cost_rise_pct:Float64} AS threshold,
    'up' AS trend,
    if(calls_now / units_now / (calls_before / units_before) >= (cost_now / calls_now) / (cost_before / calls_before)
           OR d.driver = '',
       concat('calls per unit ', toString(round(calls_before / units_before, 1)), '→',
              toString(round(calls_now / units_now, 1))),
       d.driver) AS driver,
    u.unit_kind AS unit_kind
FROM
(
    SELECT
        feature, unit_kind,
        uniqExactIf(unit_id, toDate(timestamp) > today - 7) AS units_now,
        uniqExactIf(unit_id, toDate(timestamp) <= today - 7) AS units_before,
        countIf(toDate(timestamp) > today - 7) AS calls_now,
        countIf(toDate(timestamp) <= today - 7) AS calls_before,
        toFloat64(sumIf(cost_usd, toDate(timestamp) > today - 7)) AS cost_now,
        toFloat64(sumIf(cost_usd, toDate(timestamp) <= today - 7)) AS cost_before
    FROM $database.llm_calls
    WHERE toDate(timestamp) BETWEEN today - 13 AND today AND unit_kind != '' AND cost_usd IS NOT NULL
    GROUP BY feature, unit_kind
) AS u
LEFT JOIN $database.cost_drivers(base_start = today - 13, base_end = today - 7,
                                 current_start = today - 6, current_end = today) AS d ON d.feature = u.feature
WHERE calls_now >= {min_calls:UInt64} AND calls_before >= {min_calls:UInt64} AND cost_before > 0
  AND value > {cost_rise_pct:Float64}
