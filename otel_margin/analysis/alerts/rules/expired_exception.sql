-- A strategic exception ([[exceptions]] in the policy file) past its review date: it no longer
-- covers its feature (the zone alerts see the feature again), and someone owes a decision:
-- renew it with a new review date, or remove it and bring the feature above its floor.
-- Yellow. value: days since the review date; threshold 0. driver: the owner and the reason.
WITH toDate({now:DateTime64(6, 'UTC')}) AS today
SELECT
    'expired_exception' AS rule,
    'yellow' AS severity,
    exception.1 AS feature,
    '' AS customer,
    toFloat64(today - exception.4) AS value,
    toFloat64(0) AS threshold,
    'flat' AS trend,
    concat('exception owned by ', exception.2, ' (', exception.3, ') was due for review on ',
           toString(exception.4)) AS driver,
    exception.2 AS owner,
    exception.4 AS review_date
FROM (SELECT arrayJoin({exceptions:Array(Tuple(String, String, String, Date))}) AS exception)
WHERE exception.4 < today
