"""Read and redrive ``answers.dlq``.

A redrive republishes the original message, byte for byte and with its key, to ``answers``; the worker then
treats it as a new delivery (an answer Offload already accepted ends ``duplicate``, so redriving twice is
safe). ``redrive_all`` takes only ``dead_lettered`` records (``rejected`` ones would be rejected again) and
remembers how far it got in the consumer group ``<prefix>dlq-redrive``, so each record is redriven once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kafka import KafkaConsumer, OffsetAndMetadata

from offload_bridge.clients import kafka_consumer, kafka_producer
from offload_bridge.reading import assign_all, read_to_end
from offload_bridge.schemas.answers import DlqHeader, Outcome
from offload_bridge.settings import Settings
from offload_bridge.topics import ANSWERS, ANSWERS_DLQ, topic_name

REDRIVEN_FROM_HEADER = "redriven_from"


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

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
    def case_id(self) -> str | None:
        return self.key.decode(errors="replace") if self.key is not None else None


@dataclass
class RedriveReport:
    redriven: list[DeadLetter] = field(default_factory=list)
    skipped: list[DeadLetter] = field(default_factory=list)


def _consumer(settings: Settings, group_id: str | None = None) -> KafkaConsumer:
    return kafka_consumer(settings, group_id=group_id, client_id="offload-bridge-dlq")


def _read(consumer: KafkaConsumer, settings: Settings, committed_only: bool) -> list[DeadLetter]:
    """Every record up to the current end, from the beginning or from the group's committed offsets."""
    partitions = assign_all(consumer, topic_name(ANSWERS_DLQ, settings))
    consumer.seek_to_beginning(*partitions)
    if committed_only:
        for partition in partitions:
            committed = consumer.committed(partition)
            if committed is not None:
                consumer.seek(partition, committed)
    letters: list[DeadLetter] = []
    for record in read_to_end(consumer, partitions):
        headers = {k: v.decode(errors="replace") for k, v in record.headers}
        letters.append(DeadLetter(record.partition, record.offset, record.key, record.value, headers))
    return sorted(letters, key=lambda letter: (letter.partition, letter.offset))


def list_dead_letters(settings: Settings) -> list[DeadLetter]:
    consumer = _consumer(settings)
    try:
        return _read(consumer, settings, committed_only=False)
    finally:
        consumer.close()


def _republish(settings: Settings, letters: list[DeadLetter]) -> None:
    producer = kafka_producer(settings, enable_idempotence=True, client_id="offload-bridge-dlq")
    dlq = topic_name(ANSWERS_DLQ, settings)
    try:
        futures = [
            producer.send(
                topic_name(ANSWERS, settings),
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


def redrive_answer(settings: Settings, answer_id: str) -> RedriveReport:
    """Redrive every dead letter of one answer, whatever its outcome."""
    report = RedriveReport()
    for letter in list_dead_letters(settings):
        if letter.answer_id == answer_id:
            report.redriven.append(letter)
    _republish(settings, report.redriven)
    return report


def redrive_all(settings: Settings) -> RedriveReport:
    """Redrive every ``dead_lettered`` record not redriven by an earlier ``redrive_all``."""
    group = f"{settings.offload_topic_prefix}dlq-redrive"
    consumer = _consumer(settings, group_id=group)
    try:
        letters = _read(consumer, settings, committed_only=True)
        report = RedriveReport()
        for letter in letters:
            target = report.redriven if letter.outcome == Outcome.DEAD_LETTERED else report.skipped
            target.append(letter)
        _republish(settings, report.redriven)
        # Commit only after every republished record was acknowledged: a crash means a redrive again.
        positions = {p: OffsetAndMetadata(consumer.position(p), "", -1) for p in consumer.assignment()}
        consumer.commit(positions)
        return report
    finally:
        consumer.close()
