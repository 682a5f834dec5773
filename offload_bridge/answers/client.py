"""Publish an answer to ``answers`` and wait for its terminal outcome on ``answer-outcomes``."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from pydantic import ValidationError

from offload_bridge.clients import bootstrap_list, connection_options
from offload_bridge.settings import Settings, get_settings
from offload_bridge.topics import ANSWER_OUTCOMES, ANSWERS, TopicMissing, topic_name
from schemas.answers import Answer, AnswerOutcome

Offsets = dict[TopicPartition, int]


class OutcomeTimeout(TimeoutError):
    """No terminal outcome arrived in time; the answer may still be in flight (see answer-outcomes)."""


class AnswerSubmitter:
    """Publishes answers (acks=all, keyed by caseId) and reads their outcomes.

    >>> with AnswerSubmitter() as submitter:
    ...     answer_id = submitter.publish(case_id, input_request_id, "Yes, a signed PDF is fine.")
    ...     outcome = submitter.wait_for_outcome(answer_id, timeout_s=60)
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._producer: KafkaProducer | None = None
        # Where answer-outcomes ended just before each answer was published: its outcome comes after.
        self._outcomes_start: dict[str, Offsets] = {}

    def __enter__(self) -> AnswerSubmitter:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None

    def _connect_producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap_list(self.settings),
                acks="all",
                enable_idempotence=True,
                client_id="offload-bridge-answers",
                **connection_options(self.settings),
            )
        return self._producer

    def publish(
        self,
        case_id: str,
        input_request_id: str,
        provided_context: str,
        *,
        answer_id: str | None = None,
        submitted_by: str | None = None,
        timeout_s: float = 30.0,
    ) -> str:
        """Publish one answer once the broker acknowledged it; returns its answerId.

        Raises pydantic.ValidationError for a blank field, kafka.errors.KafkaError when not acknowledged.
        """
        answer = Answer(
            caseId=case_id,
            inputRequestId=input_request_id,
            providedContext=provided_context,
            answerId=answer_id,
            submittedBy=submitted_by,
        )
        return self.publish_answer(answer, timeout_s=timeout_s)

    def publish_answer(self, answer: Answer, *, timeout_s: float = 30.0) -> str:
        self._outcomes_start[answer.answer_id] = self._outcome_end_offsets()
        producer = self._connect_producer()
        future = producer.send(
            topic_name(ANSWERS, self.settings),
            key=answer.caseId.encode(),
            value=answer.model_dump_json(exclude_none=True).encode(),
        )
        future.get(timeout=timeout_s)
        return answer.answer_id

    def wait_for_outcome(
        self,
        answer_id: str,
        timeout_s: float = 60.0,
        on_progress: Callable[[AnswerOutcome], None] | None = None,
    ) -> AnswerOutcome:
        """The first terminal outcome of the answer; ``retrying`` outcomes go to ``on_progress``.

        For an answer this submitter published, only outcomes after its publication count. For any
        other answerId the whole topic is read and the latest terminal outcome wins.
        """
        start = self._outcomes_start.get(answer_id)
        consumer = self._consumer()
        try:
            partitions = self._assign_all(consumer)
            if start is None:
                consumer.seek_to_beginning(*partitions)
            else:
                for partition in partitions:
                    consumer.seek(partition, start.get(partition, 0))
            return self._scan(consumer, answer_id, timeout_s, on_progress, latest=start is None)
        finally:
            consumer.close()

    def _scan(
        self,
        consumer: KafkaConsumer,
        answer_id: str,
        timeout_s: float,
        on_progress: Callable[[AnswerOutcome], None] | None,
        latest: bool,
    ) -> AnswerOutcome:
        deadline = time.monotonic() + timeout_s
        # While reading history, the last terminal outcome wins; after it, the first new one does.
        history_end: Offsets | None = consumer.end_offsets(list(consumer.assignment())) if latest else None
        found: AnswerOutcome | None = None
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    outcome = _parse_outcome(record.value)
                    if outcome is None or outcome.answerId != answer_id:
                        continue
                    if not outcome.outcome.terminal:
                        if on_progress is not None:
                            on_progress(outcome)
                    elif history_end is None:
                        return outcome
                    else:
                        found = outcome
            if history_end is not None and _caught_up(consumer, history_end):
                if found is not None:
                    return found
                history_end = None
        raise OutcomeTimeout(f"no terminal outcome for answer {answer_id} within {timeout_s:g}s")

    def _consumer(self) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=bootstrap_list(self.settings),
            enable_auto_commit=False,
            client_id="offload-bridge-answers",
            **connection_options(self.settings),
        )

    def _assign_all(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        name = topic_name(ANSWER_OUTCOMES, self.settings)
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


def _parse_outcome(value: bytes | None) -> AnswerOutcome | None:
    if value is None:
        return None
    try:
        return AnswerOutcome.model_validate_json(value)
    except ValidationError:
        return None


def _caught_up(consumer: KafkaConsumer, end: Offsets) -> bool:
    return all(consumer.position(partition) >= offset for partition, offset in end.items())
