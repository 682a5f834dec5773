-- questions: one row per inputRequestId, derived from the views `events` and `answers`.
--
-- asked_at     event_time of the first case.input_needed with this id (its text is `question`).
-- answered_at  "at" of the first answer of ours that settled it (outcome accepted, or duplicate: Offload
--              already had it; the rule `offload-bridge questions` applies), else the event_time of the
--              first event of the case after asked_at that shows the case past the question, else null
--              (it still waits). An event shows the case past the question unless it is that same
--              question still open: a case.input_needed with this id whose inputRequestStatus is PENDING
--              (or absent). So a terminal event, any other type (case.running after an answer given
--              outside offload-bridge), a next question (another id) and this question RESOLVED all count.
--              A question first seen already RESOLVED (the reconciler found it answered) is answered at
--              asked_at: a wait of 0, as close as the facts get.
-- answer_*     the settling answer; with none, the last answer of ours for the question (e.g. a conflict).
-- wait_ms      answered_at - asked_at in ms; null while it waits.
--
-- Ties are broken by arrival (received_at) and position in Kafka, so the result never depends on the
-- order the engine reads files in. DuckDB dialect; json_extract_string reads the webhook body.
WITH asked AS (
    SELECT
        case_id,
        input_request_id,
        question,
        event_time AS asked_at,
        row_number() OVER (
            PARTITION BY input_request_id
            ORDER BY event_time, received_at, kafka_partition, kafka_offset
        ) AS nth
    FROM events
    WHERE event_type = 'case.input_needed' AND input_request_id IS NOT NULL
),
first_asked AS (
    SELECT case_id, input_request_id, question, asked_at FROM asked WHERE nth = 1
),
settling AS (
    SELECT
        case_id,
        input_request_id,
        answer_id,
        outcome,
        submitted_by,
        "at",
        row_number() OVER (
            PARTITION BY case_id, input_request_id ORDER BY "at", kafka_partition, kafka_offset
        ) AS nth
    FROM answers
    WHERE outcome IN ('accepted', 'duplicate') AND input_request_id IS NOT NULL
),
latest_answer AS (
    SELECT
        case_id,
        input_request_id,
        answer_id,
        outcome,
        submitted_by,
        row_number() OVER (
            PARTITION BY case_id, input_request_id
            ORDER BY "at" DESC, kafka_partition DESC, kafka_offset DESC
        ) AS nth
    FROM answers
    WHERE input_request_id IS NOT NULL
),
moved_on AS (
    SELECT q.input_request_id, min(e.event_time) AS moved_at
    FROM first_asked AS q
    JOIN events AS e ON e.case_id = q.case_id AND e.event_time >= q.asked_at
    WHERE CASE
        WHEN e.event_type = 'case.input_needed' AND e.input_request_id = q.input_request_id
            THEN coalesce(json_extract_string(e.body, '$.data.inputRequestStatus'), 'PENDING') <> 'PENDING'
        ELSE e.event_time > q.asked_at
    END
    GROUP BY q.input_request_id
),
settled AS (
    SELECT
        q.case_id,
        q.input_request_id,
        q.question,
        q.asked_at,
        coalesce(s."at", m.moved_at) AS answered_at,
        CASE WHEN s.answer_id IS NOT NULL THEN s.answer_id ELSE l.answer_id END AS answer_id,
        CASE WHEN s.answer_id IS NOT NULL THEN s.outcome ELSE l.outcome END AS answer_outcome,
        CASE WHEN s.answer_id IS NOT NULL THEN s.submitted_by ELSE l.submitted_by END AS submitted_by
    FROM first_asked AS q
    LEFT JOIN settling AS s
        ON s.case_id = q.case_id AND s.input_request_id = q.input_request_id AND s.nth = 1
    LEFT JOIN latest_answer AS l
        ON l.case_id = q.case_id AND l.input_request_id = q.input_request_id AND l.nth = 1
    LEFT JOIN moved_on AS m ON m.input_request_id = q.input_request_id
)
SELECT
    case_id,
    input_request_id,
    question,
    asked_at,
    answered_at,
    answer_id,
    answer_outcome,
    submitted_by,
    CAST(date_diff('millisecond', asked_at, answered_at) AS BIGINT) AS wait_ms
FROM settled
ORDER BY asked_at, input_request_id
