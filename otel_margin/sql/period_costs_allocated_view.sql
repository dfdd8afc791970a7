-- Fixed costs of a period (period_costs, from `otel-margin costs import`) allocated to the
-- customers, features and tiers that used AI in that period, by the rule subscription revenue
-- follows (margin_daily): in proportion to allocate_by — 'calls' (inference calls: LLM calls other
-- than embeddings), 'tokens' (input + output) or 'cost' (priced cost; any other value counts
-- inference calls, as 'value' does for costs) — of the usage that matches what the cost row names
-- (a feature, customer or tier left empty matches any). margin_daily allocates by the same rule over
-- finer parts (cohort, model and unit kind too) spread over the period's days. A parameterised view:
--   SELECT ... FROM period_costs_allocated(allocate_by = 'calls', start = '2026-12-01', end = '2026-12-31')
--
-- One row per (cost row, customer, feature, tier) with its share of the row's whole amount,
-- for every cost row whose period overlaps start..end. The shares are computed in Decimal256 and
-- truncated to 12 places; the last part takes the rounding remainder, so a row's parts add up
-- to its amount exactly. When the weight is 0 for the whole period (say every call unpriced
-- under 'cost') the split falls back to calls; with no matching usage the whole amount stays
-- on the row's own feature ('unattributed' when empty), customer and tier.
CREATE OR REPLACE VIEW $database.period_costs_allocated$on_cluster AS
WITH
    costs AS
    (
        SELECT period_start, period_end, category, feature, customer, tier, amount_usd,
               toUInt32(dateDiff('day', period_start, period_end) + 1) AS period_days
        FROM $database.period_costs FINAL
        WHERE period_end >= {start:Date} AND period_start <= {end:Date}
    ),
    used AS
    (
        SELECT
            cost.period_start AS period_start, cost.period_end AS period_end, cost.category AS category,
            cost.feature AS feature, cost.customer AS customer, cost.tier AS tier,
            (usage.customer, toString(usage.feature), toString(usage.tier)) AS part,
            sum(multiIf(
                {allocate_by:String} = 'cost', usage.cost_usd,
                {allocate_by:String} = 'tokens', toDecimal128(usage.tokens, 12),
                toDecimal128(usage.inference_calls, 12))) AS weight,
            sum(usage.calls) AS calls
        FROM
        (
            SELECT period_start, period_end, category, feature, customer, tier,
                   period_start + arrayJoin(range(period_days)) AS day
            FROM costs
        ) AS cost
        INNER JOIN
        (
            SELECT day, customer, feature, tier, calls, inference_calls, tokens, cost_usd
            FROM $database.llm_calls_parts_daily
            WHERE day >= (SELECT min(period_start) FROM costs) AND day <= (SELECT max(period_end) FROM costs)
        ) AS usage ON usage.day = cost.day
        WHERE (cost.feature = '' OR usage.feature = cost.feature)
          AND (cost.customer = '' OR usage.customer = cost.customer)
          AND (cost.tier = '' OR usage.tier = cost.tier)
        GROUP BY period_start, period_end, category, feature, customer, tier, part
    ),
    shares AS
    (
        SELECT
            period_start, period_end, category, feature, customer, tier,
            arraySort(groupArray((part, weight, calls))) AS used_parts,
            arrayMap(x -> x.1, used_parts) AS parts,
            if(sum(weight) = 0, arrayMap(x -> toDecimal128(x.3, 12), used_parts), arrayMap(x -> x.2, used_parts))
                AS weights,
            arraySum(weights) AS total_weight
        FROM used
        GROUP BY period_start, period_end, category, feature, customer, tier
    ),
    allocated AS
    (
        SELECT
            cost.period_start AS period_start, cost.period_end AS period_end, cost.category AS category,
            cost.feature AS cost_feature, cost.customer AS cost_customer, cost.tier AS cost_tier,
            cost.amount_usd AS cost_amount_usd,
            if(empty(shares.parts),
               [(toString(cost.customer), if(cost.feature = '', 'unattributed', toString(cost.feature)), toString(cost.tier))],
               shares.parts) AS parts,
            if(empty(shares.parts),
               [cost.amount_usd],
               arrayMap(weight -> toDecimal128(toDecimal256(cost.amount_usd, 12) * weight / shares.total_weight, 12),
                        shares.weights)) AS rounded,
            arrayPushBack(arrayPopBack(rounded), cost.amount_usd - arraySum(arrayPopBack(rounded))) AS amounts
        FROM costs AS cost
        LEFT JOIN shares
            ON shares.period_start = cost.period_start AND shares.period_end = cost.period_end
           AND shares.category = cost.category AND shares.feature = cost.feature
           AND shares.customer = cost.customer AND shares.tier = cost.tier
    )
SELECT
    period_start, period_end, category, cost_feature, cost_customer, cost_tier, cost_amount_usd,
    part.1 AS customer, part.2 AS feature, part.3 AS tier, amount AS amount_usd
FROM allocated
ARRAY JOIN parts AS part, amounts AS amount
