-- What each guardrail did per feature over a range, from llm_calls_guardrails_daily: cache hits
-- (exact and semantic) over the calls the cache looked at, the cost they avoided, routed calls and
-- their saving, capped and blocked calls. A feature without guardrail activity has no row.
-- The cache's own cost (cache_cost_usd: the provider embeddings of its lookups, hits and misses)
-- is netted from what its hits avoided; the embedding calls are rows of their own and are counted
-- as cost by the margin views, never cache_cost_usd (so nothing is counted twice).
SELECT
    feature,
    sum(calls) AS calls,
    sum(day_cache_lookups) AS cache_lookups,
    sum(day_exact_hits) AS exact_hits,
    sum(day_semantic_hits) AS semantic_hits,
    sum(day_cache_saved_usd) AS cache_saved_usd,
    sum(day_cache_cost_usd) AS cache_cost_usd,
    cache_saved_usd - cache_cost_usd AS cache_net_saved_usd,
    sum(day_routed_calls) AS routed_calls,
    sum(day_route_saved_usd) AS route_saved_usd,
    sum(day_capped_calls) AS capped_calls,
    sum(day_blocked_calls) AS blocked_calls
FROM
(
    SELECT
        feature, calls, cache_lookups AS day_cache_lookups, exact_hits AS day_exact_hits,
        semantic_hits AS day_semantic_hits, cache_saved_usd AS day_cache_saved_usd,
        cache_cost_usd AS day_cache_cost_usd, routed_calls AS day_routed_calls,
        route_saved_usd AS day_route_saved_usd, capped_calls AS day_capped_calls, blocked_calls AS day_blocked_calls
    FROM $database.llm_calls_guardrails_daily
    WHERE day >= {start:Date} AND day <= {end:Date}
      AND ({feature:String} = '' OR feature = {feature:String})
      AND ({tier:String} = '' OR tier = {tier:String})
      AND ({customer:String} = '' OR customer = {customer:String})
)
GROUP BY feature
HAVING cache_lookups + routed_calls + capped_calls + blocked_calls > 0
ORDER BY cache_net_saved_usd + route_saved_usd DESC, feature
