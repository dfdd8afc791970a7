-- A feature's average cost per priced request rose three days in a row, each day by more than
-- daily_rise_pct (default 2 %): the last three whole days (yesterday and the two before) each
-- above the day before. Yellow. Each day needs min_calls priced calls.
-- value: the rise from the first day to yesterday, in %. driver: the primary cost driver
-- between that first day and yesterday (cost_drivers view).
WITH toDate({now:DateTime64(6, 'UTC')}) AS today
SELECT
    'cost_per_request_3_days' AS rule,
    'yellow' AS severity,
    s.feature AS feature,
    '' AS customer,
    (averages[4] / averages[1] - 1) * 100 AS value,
    {daily_rise_pct:Float64} AS threshold,
    'up' AS trend,
    d.driver AS driver,
    averages AS cost_per_request_by_day
FROM
(
    SELECT feature, arrayMap(x -> x.2, arraySort(groupArray((day, average)))) AS averages, min(calls) AS fewest
    FROM
    (
        SELECT day, feature, sum(priced_calls) AS calls, toFloat64(sum(cost_usd)) / calls AS average
        FROM $database.llm_calls_daily
        WHERE day BETWEEN today - 4 AND today - 1
        GROUP BY day, feature
        HAVING calls > 0
    )
    GROUP BY feature
    HAVING count() = 4 AND fewest >= {min_calls:UInt64}
) AS s
INNER JOIN $database.cost_drivers(base_start = today - 4, base_end = today - 4,
                                  current_start = today - 1, current_end = today - 1) AS d ON d.feature = s.feature
WHERE averages[1] > 0
  AND arrayAll(i -> averages[i + 1] > averages[i] * (1 + {daily_rise_pct:Float64} / 100), [1, 2, 3])
