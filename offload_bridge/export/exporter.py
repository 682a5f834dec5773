"""``offload-bridge export``: the fact topics to Parquet files, exactly once, as Confluent's S3 sink does it.

The exporter is a consumer group member (OFFLOAD_EXPORT_GROUP) reading ``case-events``,
``answer-outcomes`` and ``case-request-outcomes`` with librdkafka (confluent-kafka: ``bench/export.py``
measures it against aiokafka draining the same topic). Offsets are never committed automatically; the
group's committed offset of a partition is where the files of that partition end.

Exactly once, step by step:

1. **Assigned a partition**: read the group's committed offset C (none yet: the oldest offset, as
   ``auto.offset.reset=earliest`` would). Files of that partition whose first offset is >= C come from a
   flush that was written but never committed: remove them, and unfinished temporary files too
   (``export.store``). For events, read the ``event_id`` column of the files kept, so an event already
   written is not written again. Then read from C.
2. **Buffer**: the records of each consume() call become rows, a topic at a time and in columns
   (``export.batch``); each partition's rows wait in its buffer, as Arrow tables.
3. **Flush** when the buffer holds OFFLOAD_EXPORT_ROLL_ROWS rows, when its oldest record has waited
   OFFLOAD_EXPORT_ROLL_S, or at the end of a run: one file per ``date=`` holding the rows of the contiguous
   offsets [first, next) read since the last flush, all named after ``first``, each written atomically.
   Only when all of them are durable is ``next`` committed, synchronously.
4. **A commit that fails** is settled by reading the group's offset back: if it did not land, the files
   just written are removed (the records will be read again, by this member or by the partition's new
   owner) and, if the partition is still ours, it is prepared again as in 1.
5. **Revoked**: the partition's buffer is dropped. Its new owner starts from the committed offset.

So a crash anywhere — before a write, between two files of a flush, between the files and the commit —
leaves files that step 1 removes, and records that are read again: no row is lost, none is written twice.
A failure to write to the target stops the exporter (exit 1) rather than being retried in place: a restart
goes through step 1, which is the recovery path that is tested.

Events are deduplicated on ``event_id`` (a redelivered webhook; a reconciler-synthesized event and the
late real webhook share Offload's id). Keys are caseIds and event ids contain the caseId, so duplicates
always share a partition, and the partition's owner alone decides.

Without ``follow`` the run stops at the end offsets the topics had when it started, flushes, writes the
``questions`` and ``cases`` snapshots and returns. With ``follow`` it keeps going until ``stop()`` (SIGTERM,
SIGINT), rolls files by size and time, and replaces the snapshots at least every OFFLOAD_EXPORT_ROLL_S when
the fact files changed.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import operator
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, Message, TopicPartition
from pyarrow import fs

from offload_bridge.analytics.files import Target
from offload_bridge.analytics.tables import FACT_TABLES, TableSpec
from offload_bridge.export import store
from offload_bridge.export.batch import Records, read_records
from offload_bridge.export.buffer import Flush, PartitionBuffer
from offload_bridge.export.metrics import ExportMetrics
from offload_bridge.kafka.connection import KafkaUnreachable, NotAuthorized, librdkafka_options, principal_of
from offload_bridge.settings import Settings
from offload_bridge.topics import TopicMissing, topic_name

log = logging.getLogger(__name__)

Key = tuple[str, int]  # (topic full name, partition)
Snapshot = Callable[[Target], dict[str, int]]

BATCH = 5000  # records taken from librdkafka's queue per call
POLL_S = 0.5  # the longest a call waits for records: how soon a stop or a timed roll is noticed
LAG_EVERY_S = 5.0
KAFKA_TIMEOUT_S = 30.0


# librdkafka's authorization errors and what each refuses.
_REFUSED = {
    KafkaError.GROUP_AUTHORIZATION_FAILED: "group",
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic",
}


@dataclass(frozen=True)
class _Span:
    """Where a partition's records are in the ``Records`` of a batch: ``[lo, hi)``."""

    buffer: PartitionBuffer
    lo: int
    hi: int


class TargetFailed(RuntimeError):
    """The target refused a write or a listing; the exporter stops (a restart recovers)."""


@dataclass
class Summary:
    """What one run did."""

    rows: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    skipped: dict[tuple[str, str], int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    snapshots: dict[str, int] = field(default_factory=dict)
    completed: bool = True  # False: stopped before the end offsets (non-follow run interrupted)


def consumer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """The exporter's librdkafka consumer: the cluster's connection settings, commits only when told."""
    return {
        **librdkafka_options(settings),
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": settings.export_group,
        "client.id": "offload-bridge-export",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # A member joining or leaving moves only the partitions that change hands; the others keep
        # their buffers instead of being revoked and re-prepared at every rebalance.
        "partition.assignment.strategy": "cooperative-sticky",
        # How long the group waits for a member that went silent (a crash, a SIGKILL) before its partitions
        # go to the others or to its restarted self. librdkafka heartbeats from a thread of its own, so a
        # long flush or snapshot does not count against it; 10 s is above the broker's 6 s minimum.
        "session.timeout.ms": 10_000,
        # librdkafka pauses a partition's fetches this long once its local queue is full (default 1 s): the
        # exporter drains the queue far sooner, and the pauses alone cut a backlog's read rate to a fifth
        # (bench/export.py measures both).
        "fetch.queue.backoff.ms": 10,
        # A new client's first metadata request is lost when librdkafka swaps its bootstrap connection for
        # the broker's own, and the next one waits half of this backoff (default 100 ms): 54 ms of every
        # run's start, 15 ms at 10 ms. Reconnects to a broker that is down still back off exponentially,
        # from 10 ms up to reconnect.backoff.max.ms.
        "reconnect.backoff.ms": 10,
        **overrides,
    }


class Exporter:
    def __init__(
        self,
        settings: Settings,
        target: Target,
        *,
        follow: bool = False,
        metrics: ExportMetrics | None = None,
        snapshot: Snapshot | None = None,
    ) -> None:
        self.settings = settings
        self.target = target
        self.follow = follow
        self.metrics = metrics or ExportMetrics()
        self._snapshot = snapshot
        self.tables: dict[str, TableSpec] = {}
        for table in FACT_TABLES:
            assert table.topic is not None
            self.tables[topic_name(table.topic, settings)] = table
        self.partitions: dict[Key, PartitionBuffer] = {}
        self.end: dict[Key, int] = {}  # without follow: where the run stops
        self._assigned = False
        self._others_asked_at = 0.0  # monotonic time the group's offsets were last asked (_others_done)
        self._stopping = threading.Event()
        self._consumer: Consumer | None = None
        self._snapshot_state: frozenset[tuple[str, int]] | None = None
        self._snapshot_rows: dict[str, int] = {}

    def stop(self) -> None:
        """Stop reading; what is buffered is written and committed before ``run`` returns."""
        self._stopping.set()

    # --- the run ---------------------------------------------------------------------------------------

    def run(self) -> Summary:
        consumer = Consumer(consumer_config(self.settings))
        self._consumer = consumer
        try:
            self._check_topics(consumer)
            consumer.subscribe(
                list(self.tables),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )
            last_roll = last_lag = last_snapshot = time.monotonic()
            roll_s = self.settings.offload_export_roll_s
            while not self._stopping.is_set():
                with _collection_paused():
                    self._take(consumer.consume(BATCH, POLL_S))
                now = time.monotonic()
                if now - last_roll >= min(1.0, roll_s):
                    self._roll(now)
                    last_roll = now
                if not self.follow:
                    if self._reached_end():
                        break
                    continue
                if now - last_lag >= LAG_EVERY_S:
                    self._report_lag()
                    last_lag = now
                if now - last_snapshot >= roll_s:
                    self._refresh_snapshots()
                    last_snapshot = now
            completed = self.follow or self._reached_end()
            self._flush_all()
            self._write_snapshots(only_if_changed=False)
        finally:
            self._consumer = None
            consumer.close()  # leaves the group: the others take the partitions over at once
        return Summary(
            rows=dict(self.metrics.rows),
            files=dict(self.metrics.files),
            skipped=dict(self.metrics.skipped),
            duplicates=dict(self.metrics.duplicates),
            snapshots=self._snapshot_rows,
            completed=completed,
        )

    def _check_topics(self, consumer: Consumer) -> None:
        """Every topic exists (else TopicMissing); without follow, note where each partition ends now.

        The metadata of the three topics only: the whole cluster's, on a broker shared by many topics, took
        most of a short run's start (65 ms for ~300 topics, against well under 1 ms for one)."""
        for name in self.tables:
            try:
                metadata = consumer.list_topics(topic=name, timeout=KAFKA_TIMEOUT_S)
            except KafkaException as error:
                raise KafkaUnreachable(
                    f"Kafka at {self.settings.bootstrap_servers} is unreachable ({error.args[0]})"
                ) from None
            # Asked for by name, the cluster says when it hides a topic from this principal
            # (TopicAuthorizationFailed), where a listing of every topic would just leave it out.
            topic = metadata.topics.get(name)
            if topic is not None and topic.error is not None and topic.error.code() in _REFUSED:
                raise self._refused(topic.error, f"topic {name}")
            if topic is None or topic.error is not None or not topic.partitions:
                raise TopicMissing(name)
            if not self.follow:
                for partition in topic.partitions:
                    _, self.end[(name, partition)] = self._watermarks(TopicPartition(name, partition))

    def _watermarks(self, where: TopicPartition) -> tuple[int, int]:
        """The partition's oldest and end offsets. A partition without a leader yet (a topic just created,
        a broker restarting) is asked again until KAFKA_TIMEOUT_S has passed."""
        assert self._consumer is not None
        deadline = time.monotonic() + KAFKA_TIMEOUT_S
        while True:
            try:
                low, high = self._consumer.get_watermark_offsets(where, timeout=KAFKA_TIMEOUT_S, cached=False)
                return int(low), int(high)
            except KafkaException as error:
                if time.monotonic() > deadline:
                    raise KafkaUnreachable(
                        f"Kafka at {self.settings.bootstrap_servers}: no offsets for {where.topic}"
                        f"[{where.partition}] ({error.args[0].str()})"
                    ) from None
                time.sleep(0.2)

    def _take(self, messages: list[Message]) -> None:
        """One consume() call's records: grouped by partition, read a topic at a time (``export.batch``),
        their rows added to the partitions' buffers."""
        by_partition: dict[tuple[str | None, int | None], list[Message]] = {}
        for message in messages:
            if message.error() is not None:
                self._consumer_error(message)
                continue
            key = (message.topic(), message.partition())
            group = by_partition.get(key)
            if group is None:
                group = by_partition[key] = []
            group.append(message)
        by_topic: dict[str, tuple[Records, list[_Span]]] = {}
        for (topic, partition), group in by_partition.items():
            assert topic is not None and partition is not None  # a record (not an error) has both
            buffer = self.partitions.get((topic, partition))
            if buffer is None:
                continue  # a partition revoked meanwhile
            offsets = cast(list[int], [message.offset() for message in group])  # a record's is never None
            group, offsets = self._unread(buffer, group, offsets)
            if not group:
                continue
            records, spans = by_topic.setdefault(topic, (Records(), []))
            spans.append(_Span(buffer, len(records), len(records) + len(group)))
            records.partitions.extend([partition] * len(group))
            records.offsets.extend(offsets)
            records.values.extend([message.value() for message in group])
            records.headers.extend([message.headers() for message in group])
            records.timestamps.extend([message.timestamp()[1] for message in group])
        for topic, (records, spans) in by_topic.items():
            self._add(topic, records, spans)

    def _unread(
        self, buffer: PartitionBuffer, group: list[Message], offsets: list[int]
    ) -> tuple[list[Message], list[int]]:
        """The records of a partition's group still to be read: at or after the buffer's ``next`` (a record
        read again before a seek took effect is not), in increasing order, and without follow before the
        run's end offset."""
        end = None if self.follow else self.end[(buffer.topic, buffer.partition)]
        if (
            offsets[0] >= buffer.next
            and (end is None or offsets[-1] < end)
            and all(map(operator.lt, offsets, offsets[1:]))
        ):
            return group, offsets  # the usual case
        kept: list[int] = []
        next_offset = buffer.next
        for i, offset in enumerate(offsets):
            if offset >= next_offset and (end is None or offset < end):
                kept.append(i)
                next_offset = offset + 1
        return [group[i] for i in kept], [offsets[i] for i in kept]

    def _add(self, topic: str, records: Records, spans: list[_Span]) -> None:
        """Read a topic's records of one batch and give each partition its rows."""
        table = self.tables[topic].name
        rows = read_records(self.tables[topic], records)
        for skipped in rows.skipped:
            self.metrics.skip(table, skipped.skip.reason)
            log.warning(
                "skipped %s[%d]@%d: %s: %s",
                topic, skipped.partition, skipped.offset, skipped.skip.reason, skipped.skip.detail,
            )  # fmt: skip
        # The rows follow the records' order, partition after partition: when every record made a row, a
        # partition's rows are a slice of the table (no copy); otherwise they are picked by partition.
        every_record = rows.table.num_rows == len(records)
        for span in spans:
            if every_record:
                part = rows.table.slice(span.lo, span.hi - span.lo)
            elif len(spans) == 1:
                part = rows.table
            else:
                part = rows.table.filter(pc.field("kafka_partition") == span.buffer.partition)
            self._fill(span.buffer, records.offsets[span.lo : span.hi], part)

    def _fill(self, buffer: PartitionBuffer, offsets: list[int], rows: pa.Table) -> None:
        """Add a partition's records (their offsets, the rows they made) to its buffer, and flush it each
        time it holds OFFLOAD_EXPORT_ROLL_ROWS rows, as if the records had come one at a time: the records
        go in pieces of as many as there is room for rows."""
        roll_rows = self.settings.offload_export_roll_rows
        start = 0
        while start < len(offsets):
            end = min(len(offsets), start + max(roll_rows - buffer.rows, 1))
            piece = rows
            if end < len(offsets):  # the rows of records before offsets[end] (rows are in offset order)
                later = pc.index(pc.less(rows["kafka_offset"], pa.scalar(offsets[end])), False).as_py()
                cut = rows.num_rows if later < 0 else later
                piece, rows = rows.slice(0, cut), rows.slice(cut)
            duplicates = buffer.add(offsets[start], offsets[end - 1] + 1, piece)
            if duplicates:
                self.metrics.duplicate(buffer.table.name, duplicates)
            if buffer.rows >= roll_rows:
                self._flush(buffer)
                if self.partitions.get((buffer.topic, buffer.partition)) is not buffer:
                    return  # its commit failed: the partition is read again from the committed offset
            start = end

    def _consumer_error(self, message: Message) -> None:
        error = message.error()
        assert error is not None
        if error.code() in _REFUSED:
            # The group's or a topic's ACLs: waiting does not change them, so stop with the reason.
            refused = (
                f"group {self.settings.export_group}"
                if _REFUSED[error.code()] == "group"
                else (f"topic {message.topic()}")
            )
            raise self._refused(error, refused)
        if error.fatal():
            raise KafkaException(error)
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer: %s", error)

    def _refused(self, error: KafkaError, resource: str) -> NotAuthorized:
        # GROUP_AUTHORIZATION_FAILED as Kafka's Java and Python clients name it: GroupAuthorizationFailed.
        code = "".join(word.capitalize() for word in error.name().split("_"))
        return NotAuthorized(principal_of(self.settings), "read", resource, code)

    def _reached_end(self) -> bool:
        """Without follow: the group has every partition up to the run's end offsets.

        Those this member owns are read to their end; the others (another member's, or not assigned to
        anyone yet) must show a committed offset at their end. An assignment can come empty, or short, while
        the group's metadata is still incomplete (a loaded broker, a principal's first metadata request): a
        member that ended on "all my partitions are done" would then export nothing and exit 0.
        """
        if not self._assigned or self._consumer is None:
            return False
        behind = [key for key, buffer in self.partitions.items() if buffer.next < self.end[key]]
        if behind:
            # Records that are no data (transaction markers) can end a partition: the consumer's position
            # passes them though no record shows it.
            positions = self._consumer.position([TopicPartition(*key) for key in behind])
            if any(
                position.offset < self.end[(position.topic, position.partition)] for position in positions
            ):
                return False
        return self._others_done()

    def _others_done(self) -> bool:
        """True when every partition with records that this member does not own is committed to its end.
        Asked of the group at most once a second."""
        assert self._consumer is not None
        others = [key for key, end in self.end.items() if end > 0 and key not in self.partitions]
        if not others:
            return True
        now = time.monotonic()
        if now - self._others_asked_at < 1.0:
            return False
        self._others_asked_at = now
        wanted = [TopicPartition(*key) for key in others]
        committed = self._consumer.committed(wanted, timeout=KAFKA_TIMEOUT_S)
        return all(tp.offset >= self.end[(tp.topic, tp.partition)] for tp in committed)

    # --- flushes ---------------------------------------------------------------------------------------

    def _roll(self, now: float) -> None:
        roll_rows, roll_s = self.settings.offload_export_roll_rows, self.settings.offload_export_roll_s
        self._flush_many(
            [buffer for buffer in self.partitions.values() if buffer.due(now, roll_rows, roll_s)]
        )

    def _flush_all(self) -> None:
        self._flush_many([buffer for buffer in self.partitions.values() if not buffer.empty])

    def _flush(self, buffer: PartitionBuffer) -> None:
        self._flush_many([buffer])

    def _flush_many(self, buffers: list[PartitionBuffer]) -> None:
        """Write each buffer's rows, then commit the partitions whose files are all durable.

        The files of several partitions are written at once, on as many threads as cores: pyarrow encodes
        and compresses without holding the GIL, so the flushes at the end of a run (or of a roll) use
        every core. Once every write is done, their offsets are committed together, from this thread. A
        write that fails stops the exporter (TargetFailed) once the others are committed.
        """
        if not buffers:
            return
        flushes = [buffer.take() for buffer in buffers]
        if len(flushes) == 1:
            written = [self._written(flushes[0])]
        else:
            with ThreadPoolExecutor(min(len(flushes), os.cpu_count() or 1)) as pool:
                written = list(pool.map(self._written, flushes))
        durable = [
            (buffer, flush, paths)
            for buffer, flush, paths in zip(buffers, flushes, written, strict=True)
            if not isinstance(paths, TargetFailed)
        ]
        held = self._commit([(flush, paths) for _, flush, paths in durable]) if durable else []
        for (buffer, flush, paths), committed in zip(durable, held, strict=True):
            if committed:
                buffer.committed(flush)
                self.metrics.wrote(flush.table.name, flush.row_count, len(paths))
        for failure in written:
            if isinstance(failure, TargetFailed):
                raise failure

    def _written(self, flush: Flush) -> list[str] | TargetFailed:
        """The paths of the flush's files once written and durable, or why the target refused them."""
        try:
            return store.write_flush(self.target, flush) if flush.row_count else []
        except OSError as error:
            return TargetFailed(f"cannot write to {self.target.root}: {error}")

    def _commit(self, written: list[tuple[Flush, list[str]]]) -> list[bool]:
        """Commit each flush's ``next``, in one request; for each, True once the group holds it. The files
        of a flush whose commit did not land are removed."""
        assert self._consumer is not None
        offsets = [TopicPartition(flush.topic, flush.partition, flush.next) for flush, _ in written]
        failures: dict[tuple[str | None, int | None], str | None]
        try:
            results = self._consumer.commit(offsets=offsets, asynchronous=False) or offsets
            failures = {
                (tp.topic, tp.partition): None if tp.error is None else str(tp.error) for tp in results
            }
        except KafkaException as error:
            failures = {(flush.topic, flush.partition): str(error.args[0]) for flush, _ in written}
        held: list[bool] = []
        for flush, paths in written:
            failure = failures.get((flush.topic, flush.partition), "the commit gave no result for it")
            held.append(failure is None or self._commit_failed(flush, paths, failure))
        return held

    def _commit_failed(self, flush: Flush, paths: list[str], failure: str) -> bool:
        """A commit that reported a failure: True if it landed all the same; else the flush's files are
        removed and the partition, if still ours, is read again from its committed offset."""
        assert self._consumer is not None
        # A failed commit may still have landed (a timeout after the broker wrote it): ask the group.
        [held] = self._consumer.committed(
            [TopicPartition(flush.topic, flush.partition)], timeout=KAFKA_TIMEOUT_S
        )
        if held.offset == flush.next:
            return True
        log.warning(
            "commit of %s[%d]@%d failed (%s): removing its %d file(s); the records will be read again",
            flush.topic, flush.partition, flush.next, failure, len(paths),
        )  # fmt: skip
        store.remove(self.target, paths)
        key = (flush.topic, flush.partition)
        if key in self.partitions:
            self._restart(key)
        return False

    def _restart(self, key: Key) -> None:
        """Prepare a partition again after a failed commit, if it is still ours; else forget it."""
        assert self._consumer is not None
        del self.partitions[key]
        assigned = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        if key not in assigned:
            return
        [where] = self._prepare([TopicPartition(*key)])
        self._consumer.seek(where)

    # --- the group ---------------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._consumer is None:
            # Closing: a stop that came while the group was still forming gets its assignment during close(),
            # when nothing will be read any more and the committed offsets can no longer be fetched.
            return
        consumer.incremental_assign(self._prepare(partitions))
        self._assigned = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.partitions.pop((tp.topic, tp.partition), None)
            self.metrics.forget_partition(tp.topic, tp.partition)

    def _prepare(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """Step 1: where each partition starts, with its leftovers removed and its written ids known."""
        assert self._consumer is not None
        if not partitions:
            return []
        starts: list[TopicPartition] = []
        for tp in self._consumer.committed(partitions, timeout=KAFKA_TIMEOUT_S):
            start = tp.offset
            if start == OFFSET_INVALID or start < 0:
                start, _ = self._watermarks(TopicPartition(tp.topic, tp.partition))
            table = self.tables[tp.topic]
            try:
                kept, removed = store.clear_uncommitted(self.target, table, tp.topic, tp.partition, start)
                seen = store.event_id_hashes(self.target, kept) if store.is_events(table) else set()
            except OSError as error:
                raise TargetFailed(f"cannot read {self.target.root}: {error}") from None
            if removed:
                log.info(
                    "%s[%d]: removed %d file(s) written after the committed offset %d (never committed)",
                    tp.topic, tp.partition, len(removed), start,
                )  # fmt: skip
            self.partitions[(tp.topic, tp.partition)] = PartitionBuffer(
                table, tp.topic, tp.partition, start, seen
            )
            starts.append(TopicPartition(tp.topic, tp.partition, start))
        return starts

    def _report_lag(self) -> None:
        assert self._consumer is not None
        for (topic, partition), buffer in list(self.partitions.items()):
            _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            if high >= 0:
                self.metrics.set_lag(topic, partition, max(high - buffer.start, 0))

    # --- snapshots ---------------------------------------------------------------------------------------

    def _fact_files(self) -> frozenset[tuple[str, int]]:
        found: set[tuple[str, int]] = set()
        for table in FACT_TABLES:
            selector = fs.FileSelector(self.target.path(table.name), recursive=True, allow_not_found=True)
            found.update(
                (info.path, info.size or 0) for info in self.target.filesystem.get_file_info(selector)
            )
        return frozenset(found)

    def _refresh_snapshots(self) -> None:
        """The periodic snapshot of ``--follow``: a failure (an unreadable file, the target refusing) is
        logged and tried again at the next interval, and the facts keep flowing meanwhile."""
        try:
            self._write_snapshots(only_if_changed=True)
        except Exception as error:
            log.error(
                "snapshots not replaced (tried again in %gs): %s", self.settings.offload_export_roll_s, error
            )

    def _write_snapshots(self, only_if_changed: bool) -> None:
        """Replace the questions and cases snapshots, derived from the fact files as they are now.

        In follow mode this runs every OFFLOAD_EXPORT_ROLL_S and skips when no fact file appeared or changed
        since the last snapshot; the listing is taken before deriving, so a file written meanwhile (by this
        member or another) makes the next one run.
        """
        state = self._fact_files()
        if only_if_changed and state == self._snapshot_state:
            return
        started = time.monotonic()
        snapshot = self._snapshot if self._snapshot is not None else _derive_snapshots
        self._snapshot_rows = snapshot(self.target)
        self._snapshot_state = state
        self.metrics.snapshot(time.monotonic() - started)


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch is read. A consume() call makes tens of thousands of
    short-lived Python objects (the messages, each one's list of header tuples); collections triggered by
    them walk every object of the process again and again, and took a quarter of an export's time. The
    batch's objects make no cycles and are freed by reference counting when it is done."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _derive_snapshots(target: Target) -> dict[str, int]:
    from offload_bridge.analytics.derive import write_snapshots  # DuckDB, imported when first needed

    return write_snapshots(target)


def use_system_allocator() -> None:
    """Arrow's memory from the C library's allocator, for the rest of the process, rather than pyarrow's
    default (mimalloc). An export allocates and frees several MB a batch on several threads and keeps its
    buffers until the flush: with mimalloc, the same export spent two to three times as long in the
    kernel and read a quarter fewer rows a second (bench/export.py). ``offload-bridge export`` calls it,
    the process being the exporter's alone."""
    pa.set_memory_pool(pa.system_memory_pool())


def install_stop_signals(exporter: Exporter) -> Iterable[int]:
    """SIGTERM and SIGINT stop the exporter gracefully (only the main thread can take signals)."""
    if threading.current_thread() is not threading.main_thread():
        return ()
    handled = (signal.SIGTERM, signal.SIGINT)
    for signum in handled:
        signal.signal(signum, lambda *_: exporter.stop())
    return handled
