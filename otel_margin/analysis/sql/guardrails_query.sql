-- What each guardrail did per feature over a range, from the raw calls: cache hits (exact and
-- semantic) over the calls the cache looked at, the cost they avoided, routed calls and their
-- saving, capped and blocked calls. A feature without guardrail activity has no row.
-- The cache's own cost (cache_cost_usd: the provider embeddings of its lookups, hits and misses)
-- is netted from what its hits avoided; the embedding calls are rows of their own and are counted
-- as cost by the margin views, never cache_cost_usd (so nothing is counted twice).
SELECT
    feature,
    count() AS calls,
    countIf(cache_result IN ('exact', 'semantic', 'hit', 'miss')) AS cache_lookups,
    countIf(cache_result IN ('exact', 'hit')) AS exact_hits,
    countIf(cache_result = 'semantic') AS semantic_hits,
    sumIf(saved_usd, cache_result IN ('exact', 'semantic', 'hit')) AS cache_saved_usd,
    sum(cache_cost_usd) AS cache_cost_usd,
    cache_saved_usd - cache_cost_usd AS cache_net_saved_usd,
    countIf(route_from_model != '') AS routed_calls,
    sumIf(saved_usd, route_from_model != '' AND cache_result NOT IN ('exact', 'semantic', 'hit')) AS route_saved_usd,
    countIf(limit_action = 'cap') AS capped_calls,
    countIf(limit_action = 'block') AS blocked_calls
FROM $database.llm_calls
WHERE toDate(timestamp) >= {start:Date} AND toDate(timestamp) <= {end:Date}
  AND ({feature:String} = '' OR feature = {feature:String})
  AND ({tier:String} = '' OR tier = {tier:String})
  AND ({customer:String} = '' OR customer = {customer:String})
GROUP BY feature
HAVING cache_lookups + routed_calls + capped_calls + blocked_calls > 0
ORDER BY cache_net_saved_usd + route_saved_usd DESC, feature
