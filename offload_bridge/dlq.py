"""Read and redrive the dead-letter queues: ``answers.dlq`` and ``case-requests.dlq``, one convention.

A dead letter is the original record, byte for byte and with its key, with headers saying what happened
(``DlqHeader``: outcome, error, original topic/partition/offset, ...). A redrive republishes it to its
queue's input topic with a ``redriven_from`` header; the worker then treats it as a new delivery.

What each queue redrives:

- ``answers.dlq`` → ``answers``. An answer Offload already accepted ends ``duplicate``, so redriving twice
  is safe; ``--all`` skips ``rejected`` records, which would be rejected again.
- ``case-requests.dlq`` → ``case-requests``. ``--all`` skips ``rejected`` records too. ``POST /cases`` is not
  idempotent: a request whose outcome was ``unknown`` may have created its case, so it is redriven only
  on purpose (``force``). The worker gives a redriven request that ended ``dead_lettered``, ``rejected``
  or ``unknown`` a fresh attempt; one that ended ``created`` stays ``duplicate`` with its caseId.

``redrive_all`` remembers how far it got in a consumer group per queue (``<prefix>dlq-redrive`` for answers,
as before; ``<prefix>case-requests.dlq-redrive``), so each record is redriven once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kafka import KafkaConsumer, OffsetAndMetadata

from offload_bridge.kafka.connection import kafka_consumer, kafka_producer
from offload_bridge.kafka.reading import assign_all, read_to_end
from offload_bridge.schemas.answers import DlqHeader
from offload_bridge.schemas.headers import REDRIVEN_FROM_HEADER as REDRIVEN_FROM_HEADER  # re-exported
from offload_bridge.settings import Settings
from offload_bridge.topics import (
    ANSWERS,
    ANSWERS_DLQ,
    CASE_REQUESTS,
    CASE_REQUESTS_DLQ,
    CASE_WATCH,
    CASE_WATCH_DLQ,
    TopicSpec,
    topic_name,
)

CLIENT_ID = "offload-bridge-dlq"


@dataclass(frozen=True)
class DeadLetterQueue:
    """One DLQ and its rules."""

    topic: TopicSpec
    redrive_to: TopicSpec
    # What a record is about: an answer (its answer_id header) or a request (its key, the requestId).
    subject: Literal["answer", "request"]
    group_suffix: str  # the redrive_all consumer group, after the topic prefix
    redrivable: frozenset[str]  # outcomes redrive_all takes
    only_on_purpose: frozenset[str] = frozenset()  # outcomes redriven only with force

    def group(self, settings: Settings) -> str:
        return f"{settings.offload_topic_prefix}{self.group_suffix}"


ANSWERS_QUEUE = DeadLetterQueue(
    ANSWERS_DLQ, ANSWERS, "answer", "dlq-redrive", redrivable=frozenset({"dead_lettered"})
)
CASE_REQUESTS_QUEUE = DeadLetterQueue(
    CASE_REQUESTS_DLQ,
    CASE_REQUESTS,
    "request",
    "case-requests.dlq-redrive",
    redrivable=frozenset({"dead_lettered"}),
    only_on_purpose=frozenset({"unknown"}),
)
# A watch Offload refused (403: a key problem, fixed since) is worth asking again; a case it does not know
# (404) only once someone checked the id.
CASE_WATCH_QUEUE = DeadLetterQueue(
    CASE_WATCH_DLQ,
    CASE_WATCH,
    "request",
    "case-watch.dlq-redrive",
    redrivable=frozenset({"forbidden"}),
    only_on_purpose=frozenset({"not_found"}),
)
# By topic name without prefix, as ``dlq --topic`` takes it.
QUEUES: dict[str, DeadLetterQueue] = {
    queue.topic.name: queue for queue in (ANSWERS_QUEUE, CASE_REQUESTS_QUEUE, CASE_WATCH_QUEUE)
}


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]
    subject: str | None  # the answerId or requestId the record is about, when known

    @property
    def answer_id(self) -> str | None:
        return self.headers.get(DlqHeader.ANSWER_ID)

    @property
    def outcome(self) -> str | None:
        return self.headers.get(DlqHeader.OUTCOME)

    @property
    def error(self) -> str:
        return self.headers.get(DlqHeader.ERROR, "")

    @property
    def key_text(self) -> str | None:
        return self.key.decode(errors="replace") if self.key is not None else None

    @property
    def case_id(self) -> str | None:
        """The key of an answer's dead letter."""
        return self.key_text


@dataclass
class RedriveReport:
    redriven: list[DeadLetter] = field(default_factory=list)
    skipped: list[DeadLetter] = field(default_factory=list)
    # Skipped because their outcome is redriven only on purpose (``force``).
    held: list[DeadLetter] = field(default_factory=list)


def _read(
    consumer: KafkaConsumer, settings: Settings, queue: DeadLetterQueue, committed_only: bool
) -> list[DeadLetter]:
    """Every record up to the current end, from the beginning or from the group's committed offsets."""
    partitions = assign_all(consumer, topic_name(queue.topic, settings))
    consumer.seek_to_beginning(*partitions)
    if committed_only:
        for partition in partitions:
            committed = consumer.committed(partition)
            if committed is not None:
                consumer.seek(partition, committed)
    letters = []
    for record in read_to_end(consumer, partitions):
        headers = {name: value.decode(errors="replace") for name, value in record.headers}
        key = record.key.decode(errors="replace") if record.key is not None else None
        subject = headers.get(DlqHeader.ANSWER_ID) if queue.subject == "answer" else key
        letters.append(
            DeadLetter(record.partition, record.offset, record.key, record.value, headers, subject)
        )
    return sorted(letters, key=lambda letter: (letter.partition, letter.offset))


def list_dead_letters(settings: Settings, queue: DeadLetterQueue = ANSWERS_QUEUE) -> list[DeadLetter]:
    consumer = kafka_consumer(settings, client_id=CLIENT_ID)
    try:
        return _read(consumer, settings, queue, committed_only=False)
    finally:
        consumer.close()


def _republish(settings: Settings, queue: DeadLetterQueue, letters: list[DeadLetter]) -> None:
    if not letters:
        return
    producer = kafka_producer(settings, enable_idempotence=True, client_id=CLIENT_ID)
    dlq = topic_name(queue.topic, settings)
    try:
        futures = [
            producer.send(
                topic_name(queue.redrive_to, settings),
                key=letter.key,
                value=letter.value,
                headers=[(REDRIVEN_FROM_HEADER, f"{dlq}:{letter.partition}:{letter.offset}".encode())],
            )
            for letter in letters
        ]
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()


def redrive_subject(
    settings: Settings, subject: str, queue: DeadLetterQueue = ANSWERS_QUEUE, force: bool = False
) -> RedriveReport:
    """Redrive every dead letter of one answer or request, whatever its outcome; an outcome redriven only on
    purpose (a case request's ``unknown``) only with ``force``."""
    report = RedriveReport()
    for letter in list_dead_letters(settings, queue):
        if letter.subject != subject:
            continue
        held = letter.outcome in queue.only_on_purpose and not force
        (report.held if held else report.redriven).append(letter)
    _republish(settings, queue, report.redriven)
    return report


def redrive_all(
    settings: Settings, queue: DeadLetterQueue = ANSWERS_QUEUE, force: bool = False
) -> RedriveReport:
    """Redrive every record with a redrivable outcome not redriven by an earlier ``redrive_all`` (with
    ``force``, the outcomes redriven only on purpose too). The others are passed over for good."""
    consumer = kafka_consumer(settings, group_id=queue.group(settings), client_id=CLIENT_ID)
    try:
        letters = _read(consumer, settings, queue, committed_only=True)
        report = RedriveReport()
        for letter in letters:
            if letter.outcome in queue.redrivable or (force and letter.outcome in queue.only_on_purpose):
                report.redriven.append(letter)
            elif letter.outcome in queue.only_on_purpose:
                report.held.append(letter)
            else:
                report.skipped.append(letter)
        _republish(settings, queue, report.redriven)
        # Commit only after every republished record was acknowledged: a crash means a redrive again.
        positions = {p: OffsetAndMetadata(consumer.position(p), "", -1) for p in consumer.assignment()}
        consumer.commit(positions)
        return report
    finally:
        consumer.close()
