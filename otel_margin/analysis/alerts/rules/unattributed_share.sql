-- The share of the last 24 hours' cost of goods on calls without a feature ('unattributed':
-- no attribute(), baggage or route mapping named one) is above unattributed_share_pct
-- (default 5 %): margin per feature cannot see it. Yellow. Needs min_calls calls.
-- value: unattributed cost over all cost, in %; trend: against the 24 hours before.
-- driver: the service whose unattributed calls cost most; attribute its calls
-- (otel_margin.attribute, margin.feature baggage or [attribution.routes]).
WITH toStartOfHour({now:DateTime64(6, 'UTC')}) - INTERVAL 23 HOUR AS since
SELECT
    'unattributed_share' AS rule,
    'yellow' AS severity,
    'unattributed' AS feature,
    '' AS customer,
    toFloat64(sumIf(cost_usd, hourly.feature = 'unattributed' AND hour >= since)) / toFloat64(sumIf(cost_usd, hour >= since)) * 100 AS value,
    {unattributed_share_pct:Float64} AS threshold,
    multiIf(sumIf(cost_usd, hour < since) = 0, 'flat',
            abs(value - toFloat64(sumIf(cost_usd, hourly.feature = 'unattributed' AND hour < since))
                        / toFloat64(sumIf(cost_usd, hour < since)) * 100) < 0.5, 'flat',
            value > toFloat64(sumIf(cost_usd, hourly.feature = 'unattributed' AND hour < since))
                    / toFloat64(sumIf(cost_usd, hour < since)) * 100, 'up', 'down') AS trend,
    (
        SELECT concat('service ', argMax(service_name, cost), ': ', toString(round(max(cost) / sum(cost) * 100)),
                      '% of the unattributed cost')
        FROM
        (
            SELECT service_name, toFloat64(sum(cost_usd)) AS cost
            FROM $database.llm_calls
            WHERE toDate(timestamp) >= toDate(since) AND timestamp >= since AND feature = 'unattributed'
            GROUP BY service_name
        )
    ) AS driver
FROM $database.llm_calls_hourly AS hourly
WHERE hour >= since - INTERVAL 24 HOUR
HAVING sumIf(calls, hour >= since) >= {min_calls:UInt64} AND sumIf(cost_usd, hour >= since) > 0
   AND value > {unattributed_share_pct:Float64}
