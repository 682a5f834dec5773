-- Cases by final outcome per week: how many ended COMPLETED or FAILED, with which result_status.
--
-- week: the Monday (UTC) of the week the case ended (its first terminal event). Open cases have no
-- final outcome yet and are not counted. share: the fraction of that week's ended cases.
WITH ended AS (
    SELECT
        CAST(date_trunc('week', completed_at AT TIME ZONE 'UTC') AS DATE) AS week,
        status,
        result_status
    FROM cases
    WHERE completed_at IS NOT NULL
),
counted AS (
    SELECT week, status, result_status, count(*) AS cases
    FROM ended
    GROUP BY week, status, result_status
)
SELECT
    week,
    status,
    result_status,
    cases,
    round(cases / sum(cases) OVER (PARTITION BY week), 3) AS share
FROM counted
ORDER BY week, status, result_status
