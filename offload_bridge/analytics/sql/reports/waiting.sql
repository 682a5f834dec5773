-- The questions still waiting for an answer and their age (now - asked_at), oldest first.
--
-- A question waits until an answer of ours settles it or the case moves past it (see questions.sql).
-- age_s is in seconds (millisecond precision) at clock.now: the time `offload-bridge analytics --now`
-- gives, else the current time. last_answer_outcome: the outcome of our last answer to it (e.g. a
-- conflict), if any.
SELECT
    q.case_id,
    c.client_reference_id,
    q.input_request_id,
    q.question,
    q.asked_at,
    round(date_diff('millisecond', q.asked_at, clock.now) / 1000.0, 3) AS age_s,
    q.answer_outcome AS last_answer_outcome
FROM questions AS q
CROSS JOIN clock
LEFT JOIN cases AS c ON c.case_id = q.case_id
WHERE q.answered_at IS NULL
ORDER BY q.asked_at, q.input_request_id
