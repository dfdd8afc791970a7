-- Repeated requests a response cache would have served, per feature: calls with the same request
-- fingerprint (request_hash) from the same customer (the cache's default tenant scope) in the
-- range. Every call after the first of its group is avoidable; its cost is the group's cost minus
-- the first call's. Only priced, successful calls the cache did not already serve; a call
-- without a fingerprint (request_hash 0) is never a repeat.
SELECT
    feature,
    count() AS repeated_requests,
    sum(calls - 1) AS avoidable_calls,
    uniqExact(customer) AS customers,
    sum(group_cost_usd - first_cost_usd) AS avoidable_usd
FROM
(
    SELECT
        feature, customer, request_hash,
        count() AS calls,
        sum(cost_usd) AS group_cost_usd,
        argMin(cost_usd, (timestamp, span_id)) AS first_cost_usd
    FROM $database.llm_calls
    WHERE toDate(timestamp) >= {start:Date} AND toDate(timestamp) <= {end:Date}
      AND request_hash != 0 AND cost_usd IS NOT NULL AND error_type = ''
      AND cache_result NOT IN ('exact', 'semantic', 'hit')
    GROUP BY feature, customer, request_hash
    HAVING calls > 1
)
GROUP BY feature
ORDER BY avoidable_usd DESC, feature
