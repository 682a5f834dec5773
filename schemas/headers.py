"""Names of the Kafka record headers offload-bridge writes and reads.

Only the names live here, so that the ingress and the worker can use them with nothing but pydantic
installed; what each header means, per topic, is declared in the topic registry
(``offload_bridge.topics``). The dead-letter headers are ``schemas.answers.DlqHeader``.
"""

from __future__ import annotations

# On case-events (and on case-events.invalid, when the body has them).
EVENT_TYPE_HEADER = "event_type"
EVENT_ID_HEADER = "event_id"
RECEIVED_AT_HEADER = "received_at"
SOURCE_HEADER = "source"

# On case-events.invalid: why the body failed the schema.
VALIDATION_ERROR_HEADER = "validation_error"

# On a terminal outcome, and on a retry: where the record it ends (or continues) sits. The worker reads it
# back after a crash so that no record gets a second terminal outcome.
ORIGIN_HEADER = "origin"

# On a record a DLQ redrive republished (``offload-bridge dlq redrive``): ``<dlq topic>:<partition>:<offset>``
# of the dead letter it copies. The worker gives such a record a fresh attempt when its request had ended
# without a case (see ``streams.case_requests.creation``).
REDRIVEN_FROM_HEADER = "redriven_from"
