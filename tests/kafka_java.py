"""Kafka's own Java client as an independent judge of where records belong and of topic configs.

``tests/java/KafkaPartition.java`` runs ``BuiltInPartitioner.partitionForKey`` and
``tests/java/KafkaTopicConfigs.java`` runs ``Admin.describeConfigs`` and ``Admin.createTopics`` and
``tests/java/KafkaAcls.java`` ``Admin.describeAcls``, from the
kafka-clients jar the local broker runs on (``.kafka/libs``), as one-file programs: no build step, one
JVM per call.
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
TOPIC_CONFIGS_PROGRAM = Path(__file__).parent / "java" / "KafkaTopicConfigs.java"
ACLS_PROGRAM = Path(__file__).parent / "java" / "KafkaAcls.java"


def _run_java(program: Path, *args: str, stdin: str = "") -> str:
    """The standard output of a one-file program run on the broker's jars; asserts it succeeded."""
    java = shutil.which("java")
    assert java is not None, "java is not on PATH"
    libs = LocalBroker.from_settings(Settings()).libs_dir
    assert any(libs.glob("kafka-clients-*.jar")), (
        f"no kafka-clients jar in {libs}: run offload-bridge kafka fetch"
    )
    done = subprocess.run(
        [java, "-cp", f"{libs}/*", str(program), *args], input=stdin, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def java_topic_configs(settings: Settings, topics: Sequence[str]) -> dict[str, dict[str, str]]:
    """Every config in effect on each topic, as Kafka's Java ``Admin.describeConfigs`` reports it."""
    printed = _run_java(TOPIC_CONFIGS_PROGRAM, "describe", settings.bootstrap_servers, *topics)
    configs: dict[str, dict[str, str]] = {topic: {} for topic in topics}
    for line in printed.splitlines():
        topic, name, value = line.split("\t", 2)
        configs[topic][name] = value
    return configs


def java_create_topic(settings: Settings, topic: str, partitions: int, configs: dict[str, str]) -> None:
    """Create a topic with Kafka's Java ``Admin.createTopics``, with these configs."""
    pairs = [f"{name}={value}" for name, value in configs.items()]
    _run_java(TOPIC_CONFIGS_PROGRAM, "create", settings.bootstrap_servers, topic, str(partitions), *pairs)


def java_acls(bootstrap: str) -> set[tuple[str, str, str, str, str, str, str]]:
    """Every ACL the cluster holds, as Kafka's Java ``Admin.describeAcls`` lists it: (principal, resource
    type, name, pattern type, operation, host, permission), in Java's enum names (TOPIC, PREFIXED, READ, ...).
    ``bootstrap`` is a listener that needs no credentials and whose principal may describe ACLs."""
    printed = _run_java(ACLS_PROGRAM, bootstrap)
    found = set()
    for line in printed.splitlines():
        principal, kind, name, pattern, operation, host, permission = line.split("\t")
        found.add((principal, kind, name, pattern, operation, host, permission))
    return found


def java_partitions(keys: Sequence[tuple[bytes, int]]) -> list[int]:
    """The partition Kafka's Java producer gives each (key, partition count)."""
    lines = "".join(f"{count} {base64.b64encode(key).decode()}\n" for key, count in keys)
    printed = _run_java(PROGRAM, stdin=lines)
    partitions = [int(line) for line in printed.split()]
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
