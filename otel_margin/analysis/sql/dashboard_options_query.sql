-- The choices of the dashboard's filters over start..end from the daily rollup: every
-- feature and tier, and the `limit` customers with the most calls (a customer not listed can
-- still be typed in). One row per choice: (kind, value).
SELECT kind, value
FROM
(
    SELECT 'feature' AS kind, feature AS value, sum(calls) AS calls
    FROM $database.llm_calls_daily WHERE day >= {start:Date} AND day <= {end:Date} GROUP BY feature
    UNION ALL
    SELECT 'tier' AS kind, tier AS value, sum(calls) AS calls
    FROM $database.llm_calls_daily WHERE day >= {start:Date} AND day <= {end:Date} GROUP BY tier
    UNION ALL
    SELECT 'customer' AS kind, customer AS value, calls
    FROM
    (
        SELECT customer, sum(calls) AS calls
        FROM $database.llm_calls_daily WHERE day >= {start:Date} AND day <= {end:Date}
        GROUP BY customer ORDER BY calls DESC, customer LIMIT {limit:UInt32}
    )
)
ORDER BY kind, value
