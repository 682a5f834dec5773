-- How long a question waits for a human: p50, p90 and max, by submitted_by and by week asked.
--
-- Over the answered questions (answered_at set); those still waiting are in the `waiting` report.
-- dimension 'submitted_by': who gave the answer that settled the question; '(not given)' when the answer
--   came through offload-bridge without submittedBy, '(outside offload-bridge)' when the question was
--   answered some other way (the case moved past it without a settling answer of ours).
-- dimension 'week': the Monday (UTC) of the week the question was asked.
-- Waits are in seconds (millisecond precision); percentiles interpolate (percentile_cont).
WITH answered AS (
    SELECT
        CASE
            WHEN answer_outcome NOT IN ('accepted', 'duplicate') OR answer_outcome IS NULL
                THEN '(outside offload-bridge)'
            ELSE coalesce(submitted_by, '(not given)')
        END AS submitter,
        CAST(CAST(date_trunc('week', asked_at AT TIME ZONE 'UTC') AS DATE) AS VARCHAR) AS week,
        wait_ms
    FROM questions
    WHERE answered_at IS NOT NULL
),
breakdown AS (
    SELECT 'submitted_by' AS dimension, submitter AS bucket, wait_ms FROM answered
    UNION ALL
    SELECT 'week' AS dimension, week AS bucket, wait_ms FROM answered
)
SELECT
    dimension,
    bucket,
    count(*) AS questions,
    round(percentile_cont(0.5) WITHIN GROUP (ORDER BY wait_ms) / 1000.0, 3) AS p50_wait_s,
    round(percentile_cont(0.9) WITHIN GROUP (ORDER BY wait_ms) / 1000.0, 3) AS p90_wait_s,
    round(max(wait_ms) / 1000.0, 3) AS max_wait_s
FROM breakdown
GROUP BY dimension, bucket
ORDER BY dimension, bucket
