"""Publish a case request to ``case-requests`` and wait for its outcome on ``case-request-outcomes``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from pydantic import ValidationError

from offload_bridge.clients import bootstrap_list, connection_options
from offload_bridge.settings import Settings, get_settings
from offload_bridge.topics import CASE_REQUEST_OUTCOMES, CASE_REQUESTS, TopicMissing, topic_name
from schemas.case_requests import CaseRequest, CaseRequestOutcome, CaseRequestOutcomeKind

Offsets = dict[TopicPartition, int]

# uuid5 namespace of default request ids: the same body always gives the same id, so publishing the same
# file twice creates one case. Never change it.
REQUEST_ID_NAMESPACE = uuid.UUID("3c1f0e2a-7b5d-4f8e-9a61-0d2c4b6e8f13")


def default_request_id(body: Mapping[str, Any]) -> str:
    """The deterministic id of a request published without one (from its canonical JSON)."""
    canonical = json.dumps({k: v for k, v in body.items() if k != "requestId"}, sort_keys=True)
    return f"req_{uuid.uuid5(REQUEST_ID_NAMESPACE, canonical).hex}"


class OutcomeTimeout(TimeoutError):
    """No terminal outcome arrived in time; the request may still be in flight."""


class CaseRequestSubmitter:
    """Publishes case requests (acks=all, keyed by requestId) and reads their outcomes.

    >>> with CaseRequestSubmitter() as submitter:
    ...     request_id = submitter.publish(body)
    ...     outcome = submitter.wait_for_outcome(request_id, timeout_s=60)
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._producer: KafkaProducer | None = None
        self._outcomes_start: dict[str, Offsets] = {}

    def __enter__(self) -> CaseRequestSubmitter:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None

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
        self._outcomes_start[request.requestId] = self._outcome_end_offsets()
        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap_list(self.settings),
                acks="all",
                enable_idempotence=True,
                client_id="offload-bridge-case-requests",
                **connection_options(self.settings),
            )
        value = request.model_dump_json(exclude_unset=True).encode()
        future = self._producer.send(
            topic_name(CASE_REQUESTS, self.settings), key=request.requestId.encode(), value=value
        )
        future.get(timeout=timeout_s)
        return request.requestId

    def wait_for_outcome(
        self,
        request_id: str,
        timeout_s: float = 60.0,
        on_progress: Callable[[CaseRequestOutcome], None] | None = None,
    ) -> CaseRequestOutcome:
        """The first terminal outcome of the request (``retrying`` ones go to ``on_progress``).

        For a request this submitter published, only outcomes after its publication count; for any other
        requestId the whole topic is read and the latest terminal outcome wins.
        """
        start = self._outcomes_start.get(request_id)
        consumer = self._consumer()
        try:
            partitions = self._assign_all(consumer)
            if start is None:
                consumer.seek_to_beginning(*partitions)
                history_end: Offsets | None = consumer.end_offsets(partitions)
            else:
                for partition in partitions:
                    consumer.seek(partition, start.get(partition, 0))
                history_end = None
            found: CaseRequestOutcome | None = None
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=200).values():
                    for record in records:
                        outcome = _parse_outcome(record.value)
                        if outcome is None or outcome.requestId != request_id:
                            continue
                        if outcome.outcome is CaseRequestOutcomeKind.RETRYING:
                            if on_progress is not None:
                                on_progress(outcome)
                        elif history_end is None:
                            return outcome
                        else:
                            found = outcome
                if history_end is not None and all(
                    consumer.position(tp) >= end for tp, end in history_end.items()
                ):
                    if found is not None:
                        return found
                    history_end = None
            raise OutcomeTimeout(f"no terminal outcome for request {request_id} within {timeout_s:g}s")
        finally:
            consumer.close()

    def _consumer(self) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=bootstrap_list(self.settings),
            enable_auto_commit=False,
            client_id="offload-bridge-case-requests",
            **connection_options(self.settings),
        )

    def _assign_all(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        name = topic_name(CASE_REQUEST_OUTCOMES, self.settings)
        partitions = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        if not partitions:
            raise TopicMissing(name)
        consumer.assign(partitions)
        return partitions

    def _outcome_end_offsets(self) -> Offsets:
        consumer = self._consumer()
        try:
            offsets: Offsets = consumer.end_offsets(self._assign_all(consumer))
            return offsets
        finally:
            consumer.close()


def _parse_outcome(value: bytes | None) -> CaseRequestOutcome | None:
    if value is None:
        return None
    try:
        return CaseRequestOutcome.model_validate_json(value)
    except ValidationError:
        return None
