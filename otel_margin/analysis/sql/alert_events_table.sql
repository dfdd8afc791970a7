-- The alerts' history, written by `otel-margin alerts` (otel_margin.analysis.alerts.events): one row
-- per fired alert, i.e. per notification of a rule's breach for a feature and customer. A standing
-- breach within its cooldown updates its row (last_seen, value; severity: the worst seen since it
-- fired, so only a rise above it fires again) instead of firing again; a row is
-- updated by inserting it again with a higher version, so readers use FINAL. due: the destinations
-- it is to be sent to; delivered / attempts / last_error: what happened at each of them; closed_at:
-- when the row stopped being its key's live row (the breach was gone, or it fired again).
CREATE TABLE IF NOT EXISTS $database.alert_events$local$on_cluster
(
    event_id     String,
    rule         LowCardinality(String),
    source       LowCardinality(String),
    severity     LowCardinality(String),
    feature      String,
    customer     String,
    value        Float64,
    threshold    Float64,
    trend        String,
    driver       String,
    details      String,
    first_seen   DateTime64(3, 'UTC'),
    last_seen    DateTime64(3, 'UTC'),
    fired_at     DateTime64(3, 'UTC'),
    closed_at    Nullable(DateTime64(3, 'UTC')),
    due          Array(String),
    delivered    Map(String, DateTime64(3, 'UTC')),
    attempts     Map(String, UInt32),
    last_error   Map(String, String),
    version      UInt64
)
ENGINE = ${replicated}ReplacingMergeTree(version)
ORDER BY (rule, feature, customer, event_id)
