-- Fills llm_calls_guardrails_daily from every inserted call. A cache hit is 'exact' or 'semantic'
-- ('hit' from older exporters); a lookup is a hit or a 'miss'. A routed call's saving is its
-- saved_usd unless a cache hit served it (then the saving is the cache's).
CREATE MATERIALIZED VIEW IF NOT EXISTS $database.llm_calls_guardrails_daily_mv$on_cluster
TO $database.llm_calls_guardrails_daily$local
AS SELECT
    toDate(call.timestamp) AS day,
    feature,
    customer,
    tier,
    count() AS calls,
    countIf(call.cache_result IN ('exact', 'semantic', 'hit', 'miss')) AS cache_lookups,
    countIf(call.cache_result IN ('exact', 'hit')) AS exact_hits,
    countIf(call.cache_result = 'semantic') AS semantic_hits,
    sumIf(call.saved_usd, call.cache_result IN ('exact', 'semantic', 'hit')) AS cache_saved_usd,
    sum(call.cache_cost_usd) AS cache_cost_usd,
    countIf(call.route_from_model != '') AS routed_calls,
    sumIf(call.saved_usd, call.route_from_model != '' AND call.cache_result NOT IN ('exact', 'semantic', 'hit'))
        AS route_saved_usd,
    countIf(call.limit_action = 'cap') AS capped_calls,
    countIf(call.limit_action = 'block') AS blocked_calls
FROM $database.llm_calls$local AS call
GROUP BY day, feature, customer, tier
