"""Watching cases created outside the bridge: CaseWatcher and `offload-bridge track` against the real broker.

Every record must sit in the partition Kafka's Java producer gives its caseId, like every caseId-keyed topic,
so the worker reading ``case-watch`` owns the case it is asked about.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from offload_bridge.case_watch import CaseWatcher
from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.kafka.reading import read_topic
from offload_bridge.schemas.case_watch import CaseWatch
from offload_bridge.settings import Settings
from offload_bridge.testing import free_port, settings_env
from offload_bridge.topics import CASE_WATCH, topic_name
from tests.kafka_java import java_partitions

# Offload's caseIds are UUIDs; a dozen of them spread over the six partitions.
CASE_IDS = [str(uuid.UUID(int=n * 7919 + 1)) for n in range(12)]


def _cli(settings: Settings, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(settings)}
    command = [sys.executable, "-m", "offload_bridge.cli", "track", *args]
    return subprocess.run(command, env=env, input=stdin, capture_output=True, text=True, timeout=120)


def _records(settings: Settings) -> list[Any]:
    """Every record of case-watch, in order of partition, then offset."""
    records = read_topic(settings, topic_name(CASE_WATCH, settings))
    return sorted(records, key=lambda record: (record.partition, record.offset))


def _assert_placed_like_kafka(settings: Settings, records: list[Any]) -> None:
    """Keyed by caseId, a valid CaseWatch, and in the partition Kafka's default partitioner gives the key."""
    partitions = settings.offload_topic_partitions
    for record in records:
        watch = CaseWatch.model_validate_json(record.value)
        assert record.key == watch.caseId.encode()
        assert record.partition == partition_for(record.key, partitions), record
    # Kafka's own Java client agrees, so the check does not rest on our murmur2 alone.
    assert java_partitions([(record.key, partitions) for record in records]) == [
        record.partition for record in records
    ]


def test_track_publishes_one_record_per_case_in_the_partition_kafka_gives_its_id(topics: Settings) -> None:
    before = int(time.time() * 1000)
    with CaseWatcher(topics) as watcher:
        one = watcher.track(" case-a ", requested_by="billing-team", note="created in the console")
        many = watcher.track_many(CASE_IDS)
    after = int(time.time() * 1000)

    records = _records(topics)
    assert len(records) == 1 + len(CASE_IDS)
    _assert_placed_like_kafka(topics, records)
    assert len({record.partition for record in records}) > 1, "every key in one partition proves little"
    # What track returned is where the record is.
    placed = {(record.partition, record.offset): record.key.decode() for record in records}
    assert {(t.partition, t.offset): t.case_id for t in [one, *many]} == placed
    assert [t.case_id for t in many] == CASE_IDS

    first = json.loads(next(record.value for record in records if record.key == b"case-a"))
    assert before <= first.pop("at") <= after
    assert first == {"caseId": "case-a", "requestedBy": "billing-team", "note": "created in the console"}
    bare = json.loads(next(record.value for record in records if record.key == CASE_IDS[0].encode()))
    assert set(bare) == {"caseId", "at"}


def test_cli_tracks_arguments_a_file_and_stdin_one_line_per_case(topics: Settings, tmp_path: Path) -> None:
    listing = tmp_path / "cases.txt"
    listing.write_text(f"# created by the billing import\n{CASE_IDS[1]}\n\n   \n{CASE_IDS[2]}   # retried\n")

    from_args_and_file = _cli(
        topics, CASE_IDS[0], "--from-file", str(listing), "--requested-by", "ops", "--note", "lost webhook"
    )
    from_stdin = _cli(topics, "--from-file", "-", stdin=f"{CASE_IDS[3]}\n# nothing\n")

    assert from_args_and_file.returncode == 0, from_args_and_file.stderr
    assert from_stdin.returncode == 0, from_stdin.stderr
    records = _records(topics)
    _assert_placed_like_kafka(topics, records)
    where = {record.key.decode(): (record.partition, record.offset) for record in records}
    assert sorted(where) == sorted(CASE_IDS[:4])
    printed = (from_args_and_file.stdout + from_stdin.stdout).splitlines()
    assert printed == [
        f"tracked caseId={case_id} partition={where[case_id][0]} offset={where[case_id][1]}"
        for case_id in CASE_IDS[:4]
    ]
    values = {record.key.decode(): json.loads(record.value) for record in records}
    assert values[CASE_IDS[2]]["requestedBy"] == "ops" and values[CASE_IDS[2]]["note"] == "lost webhook"
    assert "requestedBy" not in values[CASE_IDS[3]]


def test_a_blank_case_id_exits_2_and_publishes_nothing(topics: Settings) -> None:
    blank_id = _cli(topics, CASE_IDS[0], "   ")
    blank_requester = _cli(topics, CASE_IDS[0], "--requested-by", " ")
    nothing = _cli(topics, "--from-file", "-", stdin="# only a comment\n\n")
    with CaseWatcher(topics) as watcher, pytest.raises(ValidationError):
        watcher.track_many([CASE_IDS[0], ""])

    assert (blank_id.returncode, blank_id.stdout) == (2, "")
    assert blank_id.stderr == (
        "offload-bridge: invalid case watch: caseId must not be blank (argument 2); nothing published\n"
    )
    assert (blank_requester.returncode, blank_requester.stdout) == (2, "")
    assert "requestedBy must not be blank (--requested-by)" in blank_requester.stderr
    assert nothing.returncode == 2 and "no caseId to track" in nothing.stderr
    assert _records(topics) == []


def test_a_missing_topic_or_an_unreachable_broker_fails_in_one_line(settings: Settings) -> None:
    missing = _cli(settings, CASE_IDS[0])  # `settings`: no topic was created under this prefix
    unreachable = _cli(
        settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"}), "c1"
    )

    assert missing.returncode == 2
    assert missing.stderr == (
        f"offload-bridge: topic {topic_name(CASE_WATCH, settings)} does not exist; "
        "run `offload-bridge topics create`\n"
    )
    assert unreachable.returncode == 2 and unreachable.stdout == ""
    assert unreachable.stderr.startswith("offload-bridge: Kafka at 127.0.0.1:")
    assert len(unreachable.stderr.splitlines()) == 1, unreachable.stderr
