-- Answers that ended conflict, rejected or dead_lettered, newest first, with Offload's reason.
--
-- conflict: Offload had moved on (another question, or the case ended); rejected: Offload refused the
-- answer (4xx); dead_lettered: the retries ran out (in answers.dlq, redrive with `offload-bridge dlq`).
SELECT
    "at",
    outcome,
    case_id,
    input_request_id,
    answer_id,
    submitted_by,
    http_status,
    error_code,
    attempt
FROM answers
WHERE outcome IN ('conflict', 'rejected', 'dead_lettered')
ORDER BY "at" DESC, answer_id
