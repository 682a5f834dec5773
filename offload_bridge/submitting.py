"""Publish a message for the worker and wait for its outcome: what answers and case requests share.

A ``Publisher`` owns the producer (acks=all, idempotent) of one input topic; a ``Submitter`` adds the wait
for an outcome. A submitter remembers where the outcome topic ended just before it published, so the outcome
it waits for is this publication's; for an id it did not publish it reads the topic's history instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from pydantic import BaseModel, ValidationError

from offload_bridge.kafka.connection import kafka_consumer, kafka_producer, refusal
from offload_bridge.kafka.reading import Offsets, assign_all, caught_up, end_offsets
from offload_bridge.settings import Settings, get_settings
from offload_bridge.topics import TopicSpec, topic_name

OutcomeT = TypeVar("OutcomeT", bound=BaseModel)


class OutcomeTimeout(TimeoutError):
    """No terminal outcome arrived in time; the message may still be in flight (see the outcome topic)."""


class Publisher:
    """Publishes to ``input_topic`` with one producer (acks=all, idempotent), made at the first send."""

    input_topic: TopicSpec
    client_id: str

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._producer: KafkaProducer | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None

    def _start_send(self, key: str, value: bytes) -> Any:
        """Hand one record to the producer; returns its future, whose ``get(timeout=…)`` waits for the
        broker's acknowledgement and gives the record's metadata (partition, offset)."""
        with self.writing():
            if self._producer is None:
                self._producer = kafka_producer(
                    self.settings, enable_idempotence=True, client_id=self.client_id
                )
            return self._producer.send(
                topic_name(self.input_topic, self.settings), key=key.encode(), value=value
            )

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Around a send or the wait for its acknowledgement: the cluster's refusal to let this principal
        write the input topic becomes one NotAuthorized naming both."""
        try:
            yield
        except KafkaError as error:
            refused = refusal(
                error, self.settings, "write to", f"topic {topic_name(self.input_topic, self.settings)}"
            )
            if refused is None:
                raise
            raise refused from None


class Submitter(Publisher, Generic[OutcomeT]):
    """Publishes to ``input_topic`` (acks=all, idempotent) and reads outcomes from ``outcome_topic``."""

    outcome_topic: TopicSpec
    outcome_model: type[OutcomeT]

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        self._outcomes_start: dict[str, Offsets] = {}

    # What tells outcomes apart: the id they are about, and whether they are final.
    def subject_of(self, outcome: OutcomeT) -> str:
        raise NotImplementedError

    def is_terminal(self, outcome: OutcomeT) -> bool:
        raise NotImplementedError

    def _send(self, subject: str, key: str, value: bytes, timeout_s: float) -> None:
        """Publish once the broker acknowledged; outcomes of ``subject`` count from here on."""
        self._outcomes_start[subject] = self._outcome_end_offsets()
        future = self._start_send(key, value)
        with self.writing():
            future.get(timeout=timeout_s)

    def wait_for_outcome(
        self,
        subject: str,
        timeout_s: float = 60.0,
        on_progress: Callable[[OutcomeT], None] | None = None,
    ) -> OutcomeT:
        """The first terminal outcome of ``subject``; the ones before it go to ``on_progress``.

        For a subject this submitter published, only outcomes after its publication count. For any other
        the whole topic is read and the latest terminal outcome wins (else the first new one).
        """
        start = self._outcomes_start.get(subject)
        consumer = self._consumer()
        try:
            partitions = self._assign_all(consumer)
            if start is None:
                consumer.seek_to_beginning(*partitions)
            else:
                for partition in partitions:
                    consumer.seek(partition, start.get(partition, 0))
            history_end: Offsets | None = end_offsets(consumer, partitions) if start is None else None
            found: OutcomeT | None = None
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=200).values():
                    for record in records:
                        outcome = self._parse(record.value)
                        if outcome is None or self.subject_of(outcome) != subject:
                            continue
                        if not self.is_terminal(outcome):
                            if on_progress is not None:
                                on_progress(outcome)
                        elif history_end is None:
                            return outcome
                        else:
                            found = outcome
                if history_end is not None and caught_up(consumer, history_end):
                    if found is not None:
                        return found
                    history_end = None  # nothing in the history: the next terminal outcome is the one
            raise OutcomeTimeout(f"no terminal outcome for {subject} within {timeout_s:g}s")
        finally:
            consumer.close()

    def _parse(self, value: bytes | None) -> OutcomeT | None:
        if value is None:
            return None
        try:
            return self.outcome_model.model_validate_json(value)
        except ValidationError:
            return None

    def _consumer(self) -> KafkaConsumer:
        return kafka_consumer(self.settings, client_id=self.client_id)

    def _assign_all(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        return assign_all(consumer, topic_name(self.outcome_topic, self.settings))

    def _outcome_end_offsets(self) -> Offsets:
        consumer = self._consumer()
        try:
            return end_offsets(consumer, self._assign_all(consumer))
        finally:
            consumer.close()


def wait_printing(
    submitter: Submitter[OutcomeT], subject: str, timeout_s: float, line: Callable[[OutcomeT], str]
) -> OutcomeT | None:
    """For the CLI: print each outcome of ``subject`` as it comes, return the terminal one (None on
    timeout, said on stderr)."""
    try:
        outcome = submitter.wait_for_outcome(
            subject, timeout_s=timeout_s, on_progress=lambda progress: print(line(progress), flush=True)
        )
    except OutcomeTimeout as error:
        print(f"offload-bridge: {error}", file=sys.stderr)
        return None
    print(line(outcome), flush=True)
    return outcome
