-- The alerts fired in a range, from the alert engine's history (alert_events, read FINAL): what
-- breached, and what became of it. closed_at is set when the breach cleared or when the same rule,
-- feature and customer fired again as a newer row; next_fired_at (the key's next row, if any, else
-- NULL) tells the two apart: closed when the next one fired means it fired again, else it cleared.
SELECT *
FROM
(
    SELECT
        rule, severity, feature, customer, value, threshold, trend, driver, fired_at, closed_at,
        length(mapKeys(delivered)) AS delivered_to,
        length(due) AS due_to,
        nullIf(leadInFrame(fired_at) OVER key_history, toDateTime64(0, 3, 'UTC')) AS next_fired_at
    FROM $database.alert_events FINAL
    WINDOW key_history AS (PARTITION BY rule, feature, customer ORDER BY fired_at, event_id
                           ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
)
WHERE fired_at >= toDateTime64({start:Date}, 3, 'UTC') AND fired_at < toDateTime64({end:Date} + 1, 3, 'UTC')
ORDER BY fired_at, rule, feature, customer
