-- The alerts' history that decides what fires and what is still to be sent: every alert fired
-- since {since}, and every one still open (the live row of its rule, feature and customer).
SELECT event_id, rule, source, severity, feature, customer, value, threshold, trend, driver, details,
       first_seen, last_seen, fired_at, closed_at, due, delivered, attempts, last_error, version
FROM $database.alert_events FINAL
WHERE fired_at >= {since:DateTime64(3, 'UTC')} OR closed_at IS NULL
ORDER BY fired_at, event_id
