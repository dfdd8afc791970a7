-- The dashboard's recent alerts: the `limit` latest fired in start..end from the alert engine's
-- history (alert_events, read FINAL), newest first, with the page's feature and customer
-- filters bound ('' = any); closed_at NULL means the breach is still standing.
SELECT
    fired_at, severity, rule, feature, customer, value, threshold, driver, closed_at,
    length(mapKeys(delivered)) AS delivered_to, length(due) AS due_to
FROM $database.alert_events FINAL
WHERE fired_at >= toDateTime64({start:Date}, 3, 'UTC') AND fired_at < toDateTime64({end:Date} + 1, 3, 'UTC')
  AND ({feature:String} = '' OR feature = {feature:String})
  AND ({customer:String} = '' OR customer = {customer:String})
ORDER BY fired_at DESC, rule, feature, customer
LIMIT {limit:UInt32}
