-- Time to completion: p50, p90 and max time from a case's first event to its end, by week and outcome.
--
-- week: the Monday (UTC) of the week the case ended; status: COMPLETED or FAILED. duration = completed_at -
-- first_seen_at, in seconds (millisecond precision); percentiles interpolate (percentile_cont).
SELECT
    CAST(date_trunc('week', completed_at AT TIME ZONE 'UTC') AS DATE) AS week,
    status,
    count(*) AS cases,
    round(percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) / 1000.0, 3) AS p50_duration_s,
    round(percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_ms) / 1000.0, 3) AS p90_duration_s,
    round(max(duration_ms) / 1000.0, 3) AS max_duration_s
FROM cases
WHERE completed_at IS NOT NULL
GROUP BY CAST(date_trunc('week', completed_at AT TIME ZONE 'UTC') AS DATE), status
ORDER BY week, status
