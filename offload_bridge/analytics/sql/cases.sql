-- cases: the latest state of every case that has an event, derived from the views `events` and `answers`.
--
-- The newest event by event_time gives status, result_status, failure_reason, last_event_type and
-- last_event_at. At an equal event_time a terminal event wins, then the later received, then the later
-- offset: the order the worker's fold applies (an older event never overwrites a newer one, and a
-- non-terminal one never replaces a terminal one in the same millisecond). client_reference_id, channel and
-- attempt_count come from the newest event that carries them (synthesized events may leave them out).
-- first_seen_at  event_time of the case's first event.
-- completed_at   event_time of its first terminal event (status COMPLETED or FAILED); null while open.
-- duration_ms    completed_at - first_seen_at in ms.
-- questions      distinct inputRequestIds of its case.input_needed events.
-- answers_accepted  distinct answers of ours Offload took: outcome accepted, or duplicate (Offload already
--                had it); an outcome written twice for one answerId counts once.
-- DuckDB dialect.
WITH ordered AS (
    SELECT
        *,
        row_number() OVER newest_first AS recency,
        last_value(client_reference_id IGNORE NULLS) OVER oldest_to_newest AS known_client_reference_id,
        last_value(channel IGNORE NULLS) OVER oldest_to_newest AS known_channel,
        last_value(attempt_count IGNORE NULLS) OVER oldest_to_newest AS known_attempt_count
    FROM (
        SELECT *, CASE WHEN status IN ('COMPLETED', 'FAILED') THEN 1 ELSE 0 END AS terminal FROM events
    )
    WINDOW
        newest_first AS (
            PARTITION BY case_id
            ORDER BY event_time DESC, terminal DESC, received_at DESC, kafka_partition DESC, kafka_offset DESC
        ),
        oldest_to_newest AS (
            PARTITION BY case_id
            ORDER BY event_time, terminal, received_at, kafka_partition, kafka_offset
            ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
        )
),
lifetimes AS (
    SELECT
        case_id,
        min(event_time) AS first_seen_at,
        min(CASE WHEN terminal = 1 THEN event_time END) AS completed_at,
        count(DISTINCT CASE WHEN event_type = 'case.input_needed' THEN input_request_id END) AS questions
    FROM ordered
    GROUP BY case_id
),
taken AS (
    SELECT case_id, count(DISTINCT answer_id) AS answers_accepted
    FROM answers
    WHERE outcome IN ('accepted', 'duplicate')
    GROUP BY case_id
)
SELECT
    o.case_id,
    o.known_client_reference_id AS client_reference_id,
    o.status,
    o.result_status,
    o.known_channel AS channel,
    o.known_attempt_count AS attempt_count,
    o.failure_reason,
    o.event_type AS last_event_type,
    o.event_time AS last_event_at,
    l.first_seen_at,
    l.completed_at,
    CAST(date_diff('millisecond', l.first_seen_at, l.completed_at) AS BIGINT) AS duration_ms,
    CAST(l.questions AS BIGINT) AS questions,
    CAST(coalesce(t.answers_accepted, 0) AS BIGINT) AS answers_accepted
FROM ordered AS o
JOIN lifetimes AS l ON l.case_id = o.case_id
LEFT JOIN taken AS t ON t.case_id = o.case_id
WHERE o.recency = 1
ORDER BY l.first_seen_at, o.case_id
