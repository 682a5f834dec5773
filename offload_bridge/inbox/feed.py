"""The inbox's reader of the topics: one librdkafka consumer in a thread, handing records to the store.

It is assigned every partition of ``case-state`` (from the beginning: compacted, the latest state of each
case), and of ``case-events``, ``answers`` and ``answer-outcomes`` from the start of the history window
(``OFFLOAD_INBOX_HISTORY_DAYS`` ago, found by timestamp). It joins no consumer group and commits nothing:
every inbox replica builds its own view, and a restart reads it again. It is ready once it has read up to
where the topics ended when it started; after that the store trails the topics by one poll.

Records are parsed in the thread and handed to the event loop in batches (``call_soon_threadsafe``), where
the store lives. A record that does not parse is counted and skipped, never fatal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from pydantic import ValidationError

from offload_bridge.inbox.store import AskedQuestion, FeedItem, OutcomeItem, StateItem, SubmittedAnswer
from offload_bridge.kafka.connection import librdkafka_options
from offload_bridge.schemas.answers import Answer, AnswerOutcome
from offload_bridge.schemas.case_state import CaseState
from offload_bridge.schemas.events import INPUT_NEEDED
from offload_bridge.schemas.headers import EVENT_TYPE_HEADER
from offload_bridge.settings import Settings
from offload_bridge.topics import ANSWER_OUTCOMES, ANSWERS, CASE_EVENTS, CASE_STATE, topic_name

log = logging.getLogger(__name__)

_BATCH = 1000
_POLL_S = 0.2
_RETRY_S = 2.0
_TIMEOUT_S = 10.0


@dataclass
class FeedStatus:
    """What the pages and probes say about the feed (written by the thread, read on the loop)."""

    ready: bool = False  # read up to where the topics ended at start
    error: str | None = None  # why the feed cannot read now, when it cannot
    skipped: int = 0  # records that did not parse
    lag: int = 0  # records behind the partitions' ends, at the last look


def consumer_options(settings: Settings) -> dict[str, object]:
    return {
        **librdkafka_options(settings),
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": "offload-bridge-inbox",
        # librdkafka asks for a group id even for assigned partitions; this one is never joined (no
        # subscribe) and never committed to, so the inbox's Kafka role needs no group at all.
        "group.id": f"{settings.offload_topic_prefix}inbox-unjoined",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
    }


class Feed:
    def __init__(
        self,
        settings: Settings,
        deliver: Callable[[list[FeedItem]], None],
        history_ms: int,
    ) -> None:
        """``deliver`` runs on the event loop given to ``start`` with each batch."""
        self.settings = settings
        self.status = FeedStatus()
        self._deliver = deliver
        self._loop: asyncio.AbstractEventLoop | None = None
        self._history_ms = history_ms
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inbox-feed", daemon=True)
        self._topics = {
            topic_name(CASE_STATE, settings): self._state,
            topic_name(CASE_EVENTS, settings): self._event,
            topic_name(ANSWERS, settings): self._answer,
            topic_name(ANSWER_OUTCOMES, settings): self._outcome,
        }

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=_TIMEOUT_S)

    # --- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            consumer = Consumer(consumer_options(self.settings))
            try:
                ends = self._assign(consumer)
                self.status.error = None
                self._follow(consumer, ends)
            except KafkaException as error:
                self.status.error = f"cannot read the topics: {error.args[0].str()}"
                log.warning("inbox feed: %s; retrying", self.status.error)
            except _TopicMissing as missing:
                self.status.error = str(missing)
                log.warning("inbox feed: %s; retrying", missing)
            finally:
                consumer.close()
            self._stop.wait(_RETRY_S)

    def _assign(self, consumer: Consumer) -> dict[tuple[str, int], int]:
        """Assign every partition at its starting offset; returns where each partition ends now."""
        metadata = consumer.list_topics(timeout=_TIMEOUT_S)
        since_ms = int(time.time() * 1000) - self._history_ms
        assignment: list[TopicPartition] = []
        for name in self._topics:
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None or not topic.partitions:
                raise _TopicMissing(f"topic {name} does not exist or cannot be described")
            partitions = [TopicPartition(name, p) for p in sorted(topic.partitions)]
            if name == topic_name(CASE_STATE, self.settings):
                assignment += [TopicPartition(name, p.partition, OFFSET_BEGINNING) for p in partitions]
                continue
            found = consumer.offsets_for_times(
                [TopicPartition(name, p.partition, since_ms) for p in partitions], timeout=_TIMEOUT_S
            )
            # -1: no record at or after the time; start at the end.
            assignment += [
                TopicPartition(name, p.partition, p.offset if p.offset >= 0 else OFFSET_END) for p in found
            ]
        ends: dict[tuple[str, int], int] = {}
        for partition in assignment:
            low, high = consumer.get_watermark_offsets(partition, timeout=_TIMEOUT_S)
            start = (
                partition.offset
                if partition.offset >= 0
                else (low if partition.offset == OFFSET_BEGINNING else high)
            )
            if high > start:
                ends[(partition.topic, partition.partition)] = high
        consumer.assign(assignment)
        return ends

    def _follow(self, consumer: Consumer, ends: dict[tuple[str, int], int]) -> None:
        loop = self._loop
        assert loop is not None, "started without a loop"
        positions: dict[tuple[str, int], int] = {}
        last_lag_check = 0.0
        reached = self.status.ready  # a feed that reconnects stays ready
        while not self._stop.is_set():
            # Wait for one record, then take what else is already fetched: a lone record is handed over
            # at once instead of waiting out the poll for a full batch.
            messages = consumer.consume(1, _POLL_S)
            if messages:
                messages += consumer.consume(_BATCH - 1, 0)
            items: list[FeedItem] = []
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
                        # librdkafka looks up the coordinator of its group.id even for assigned partitions;
                        # the inbox has no group and needs none (it never joins or commits).
                        continue
                    if error.fatal() or not error.retriable():
                        raise KafkaException(error)
                    continue
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                assert topic is not None and partition is not None and offset is not None
                positions[(topic, partition)] = offset + 1
                item = self._parse(topic, message)
                if item is not None:
                    items.append(item)
            if items:
                loop.call_soon_threadsafe(self._deliver, items)
            if not reached and self._reached(consumer, ends, positions):
                # Ready once the batch above is applied: queued behind it on the loop.
                reached = True
                loop.call_soon_threadsafe(self._mark_ready)
            now = time.monotonic()
            if now - last_lag_check > 5.0:
                last_lag_check = now
                self.status.lag = self._lag(consumer, positions)

    @staticmethod
    def _reached(
        consumer: Consumer, ends: dict[tuple[str, int], int], positions: dict[tuple[str, int], int]
    ) -> bool:
        """True when every partition was read to its end at start. The consumer's own position counts
        too: a compacted topic may have no record at the offset just before its end."""
        left = {key: end for key, end in ends.items() if positions.get(key, 0) < end}
        if left:
            fetched = consumer.position([TopicPartition(topic, partition) for topic, partition in left])
            for partition in fetched:
                key = (partition.topic, partition.partition)
                if partition.offset >= left[key]:
                    del left[key]
        ends.clear()
        ends.update(left)
        return not ends

    def _mark_ready(self) -> None:
        self.status.ready = True

    @staticmethod
    def _lag(consumer: Consumer, positions: dict[tuple[str, int], int]) -> int:
        behind = 0
        for (topic, partition), position in positions.items():
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            behind += max(0, high - position)
        return behind

    def _parse(self, topic: str, message: Message) -> FeedItem | None:
        try:
            return self._topics[topic](message)
        except (ValueError, ValidationError, KeyError, TypeError) as error:
            self.status.skipped += 1
            log.warning(
                "inbox feed: skipped %s[%s]@%s: %s",
                topic,
                message.partition(),
                message.offset(),
                str(error).splitlines()[0],
            )
            return None

    @staticmethod
    def _state(message: Message) -> FeedItem | None:
        key, value = message.key(), message.value()
        if key is None:
            return None
        case_id = key.decode() if isinstance(key, bytes) else str(key)
        if value is None:
            return StateItem(case_id, None)
        return StateItem(case_id, CaseState.model_validate_json(value))

    @staticmethod
    def _event(message: Message) -> FeedItem | None:
        headers = dict(message.headers() or [])
        event_type = headers.get(EVENT_TYPE_HEADER)
        if event_type is not None and event_type != INPUT_NEEDED.encode():
            return None  # only questions are history here; the state says the rest
        value = message.value()
        if value is None:
            return None
        body = json.loads(value)
        if not isinstance(body, dict) or body.get("event_type") != INPUT_NEEDED:
            return None
        data = body["data"]
        asked_at = data.get("inputRequestedAt") or body.get("timestamp") or message.timestamp()[1]
        return AskedQuestion(
            str(data["caseId"]), str(data["inputRequestId"]), str(data["inputRequest"]), int(asked_at)
        )

    @staticmethod
    def _answer(message: Message) -> FeedItem | None:
        value = message.value()
        if value is None:
            return None
        answer = Answer.model_validate_json(value)
        return SubmittedAnswer(
            case_id=answer.caseId,
            answer_id=answer.answer_id,
            input_request_id=answer.inputRequestId,
            text=answer.providedContext,
            submitted_by=answer.submittedBy,
            published_at=message.timestamp()[1],
        )

    @staticmethod
    def _outcome(message: Message) -> FeedItem | None:
        value = message.value()
        if value is None:
            return None
        return OutcomeItem(AnswerOutcome.model_validate_json(value))


class _TopicMissing(RuntimeError):
    pass
