"""Publish a case request to ``case-requests`` and wait for its outcome on ``case-request-outcomes``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from offload_bridge.schemas.case_requests import CaseRequest, CaseRequestOutcome, CaseRequestOutcomeKind
from offload_bridge.submitting import OutcomeTimeout, Submitter
from offload_bridge.topics import CASE_REQUEST_OUTCOMES, CASE_REQUESTS

__all__ = ["CaseRequestSubmitter", "OutcomeTimeout", "default_request_id"]

# uuid5 namespace of default request ids: the same body always gives the same id, so publishing the same
# file twice creates one case. Never change it.
REQUEST_ID_NAMESPACE = uuid.UUID("3c1f0e2a-7b5d-4f8e-9a61-0d2c4b6e8f13")


def default_request_id(body: Mapping[str, Any]) -> str:
    """The deterministic id of a request published without one (from its canonical JSON)."""
    canonical = json.dumps({k: v for k, v in body.items() if k != "requestId"}, sort_keys=True)
    return f"req_{uuid.uuid5(REQUEST_ID_NAMESPACE, canonical).hex}"


class CaseRequestSubmitter(Submitter[CaseRequestOutcome]):
    """Publishes case requests (keyed by requestId) and reads their outcomes.

    >>> with CaseRequestSubmitter() as submitter:
    ...     request_id = submitter.publish(body)
    ...     outcome = submitter.wait_for_outcome(request_id, timeout_s=60)
    """

    input_topic = CASE_REQUESTS
    outcome_topic = CASE_REQUEST_OUTCOMES
    outcome_model = CaseRequestOutcome
    client_id = "offload-bridge-case-requests"

    def subject_of(self, outcome: CaseRequestOutcome) -> str:
        return outcome.requestId

    def is_terminal(self, outcome: CaseRequestOutcome) -> bool:
        return outcome.outcome is not CaseRequestOutcomeKind.RETRYING

    def publish(
        self, body: Mapping[str, Any], *, request_id: str | None = None, timeout_s: float = 30.0
    ) -> str:
        """Validate and publish one request once the broker acknowledged it; returns its requestId.

        The requestId is ``request_id``, else the body's ``requestId``, else ``default_request_id(body)``.
        Raises pydantic.ValidationError for a body POST /cases would refuse, KafkaError when not acked.
        """
        chosen = request_id or body.get("requestId") or default_request_id(body)
        request = CaseRequest.model_validate({**body, "requestId": chosen})
        return self.publish_request(request, timeout_s=timeout_s)

    def publish_request(self, request: CaseRequest, *, timeout_s: float = 30.0) -> str:
        value = request.model_dump_json(exclude_unset=True).encode()
        self._send(request.requestId, request.requestId, value, timeout_s)
        return request.requestId
