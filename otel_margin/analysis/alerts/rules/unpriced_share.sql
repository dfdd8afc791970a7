-- A feature's share of unpriced calls over the last 24 hours is above unpriced_share_pct
-- (default 1 %): their cost is unknown (never counted as 0 USD), so its margin is an upper
-- bound. Yellow. Needs min_calls calls. value: unpriced calls over calls, in %; trend: against
-- the 24 hours before. driver: the model with the most unpriced calls; price it in the policy
-- file ([prices.models] or [hosts]).
WITH toStartOfHour({now:DateTime64(6, 'UTC')}) - INTERVAL 23 HOUR AS since
SELECT
    'unpriced_share' AS rule,
    'yellow' AS severity,
    feature,
    '' AS customer,
    sum(unpriced_now) / sum(calls_now) * 100 AS value,
    {unpriced_share_pct:Float64} AS threshold,
    multiIf(sum(calls_before) = 0, 'flat',
            abs(value - sum(unpriced_before) / sum(calls_before) * 100) < 0.5, 'flat',
            value > sum(unpriced_before) / sum(calls_before) * 100, 'up', 'down') AS trend,
    concat('model ', argMax(model, unpriced_now), ' (provider ', argMax(provider, unpriced_now), '): ',
           toString(max(unpriced_now)), ' unpriced calls') AS driver,
    sum(unpriced_now) AS unpriced_calls
FROM
(
    SELECT
        feature, provider, response_model AS model,
        sumIf(unpriced_calls, hour >= since) AS unpriced_now, sumIf(calls, hour >= since) AS calls_now,
        sumIf(unpriced_calls, hour < since) AS unpriced_before, sumIf(calls, hour < since) AS calls_before
    FROM $database.llm_calls_hourly
    WHERE hour >= since - INTERVAL 24 HOUR
    GROUP BY feature, provider, model
)
GROUP BY feature
HAVING sum(calls_now) >= {min_calls:UInt64} AND value > {unpriced_share_pct:Float64}
