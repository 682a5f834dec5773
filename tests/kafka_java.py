"""Kafka's own Java client as an independent judge of where records belong.

``tests/java/KafkaPartition.java`` runs ``BuiltInPartitioner.partitionForKey`` from the kafka-clients jar
the local broker runs on (``.kafka/libs``), as a one-file program: no build step, one JVM per call.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from offload_bridge.kafka.connection import kafka_consumer
from offload_bridge.kafka.local_broker import LocalBroker
from offload_bridge.kafka.reading import read_topic
from offload_bridge.settings import Settings

PROGRAM = Path(__file__).parent / "java" / "KafkaPartition.java"


def java_partitions(keys: Sequence[tuple[bytes, int]]) -> list[int]:
    """The partition Kafka's Java producer gives each (key, partition count)."""
    java = shutil.which("java")
    assert java is not None, "java is not on PATH"
    libs = LocalBroker.from_settings(Settings()).libs_dir
    assert any(libs.glob("kafka-clients-*.jar")), (
        f"no kafka-clients jar in {libs}: run offload-bridge kafka fetch"
    )
    lines = "".join(f"{count} {base64.b64encode(key).decode()}\n" for key, count in keys)
    done = subprocess.run(
        [java, "-cp", f"{libs}/*", str(PROGRAM)], input=lines, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    partitions = [int(line) for line in done.stdout.split()]
    assert len(partitions) == len(keys)
    return partitions


@dataclass(frozen=True)
class Placed:
    topic: str
    partition: int
    offset: int
    key: bytes
    partitions: int


def keyed_records(settings: Settings) -> list[Placed]:
    """Every keyed record of every topic under the settings' prefix (Faust's changelogs too)."""
    consumer = kafka_consumer(settings)
    try:
        names = sorted(name for name in consumer.topics() if name.startswith(settings.offload_topic_prefix))
        counts = {name: len(consumer.partitions_for_topic(name) or ()) for name in names}
    finally:
        consumer.close()
    return [
        Placed(record.topic, record.partition, record.offset, record.key, counts[record.topic])
        for record in read_topic(settings, *names)
        if record.key is not None
    ]


def assert_placed_like_kafka(settings: Settings, expect: Sequence[str] = ()) -> dict[str, int]:
    """Every keyed record under the prefix sits in the partition Kafka's Java producer gives its key.

    ``expect``: topic names (without prefix) that must hold keyed records, so the check is not vacuous.
    Returns the number of records checked per topic.
    """
    records = keyed_records(settings)
    judged = java_partitions([(record.key, record.partitions) for record in records])
    misplaced = [
        f"{record.topic}[{record.partition}]@{record.offset} key={record.key!r}: Kafka says {partition}"
        for record, partition in zip(records, judged, strict=True)
        if partition != record.partition
    ]
    assert not misplaced, f"{len(misplaced)} of {len(records)} records misplaced, e.g. {misplaced[:5]}"
    checked: dict[str, int] = {}
    for record in records:
        name = record.topic.removeprefix(settings.offload_topic_prefix)
        checked[name] = checked.get(name, 0) + 1
    missing = [name for name in expect if not checked.get(name)]
    assert not missing, f"no keyed records to check in {missing}; checked {checked}"
    return checked
