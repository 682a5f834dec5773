"""The topic registry and what is derived from it, without a broker."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, cast

from offload_bridge.faust_topics import faust_topic
from offload_bridge.settings import Settings
from offload_bridge.topics import ALL_TOPICS, CASE_EVENTS


def test_every_topic_is_declared_once_and_keyed_by_a_field_of_its_value() -> None:
    names = [spec.name for spec in ALL_TOPICS]
    assert len(set(names)) == len(names)
    for spec in ALL_TOPICS:
        assert spec.writers and spec.readers, spec.name
        if spec.model is None or spec is CASE_EVENTS:
            continue  # raw bytes; case-events carries its caseId in data
        assert spec.key in spec.model.model_fields, spec.name


def test_only_the_retry_topics_are_internal() -> None:
    assert {spec.name for spec in ALL_TOPICS if spec.internal} == {"answers.retry"}


class _RecordingApp:
    def topic(self, name: str, **options: Any) -> tuple[str, dict[str, Any]]:
        return name, options


def test_faust_topics_are_raw_bytes_with_the_configured_partitions() -> None:
    settings = Settings(offload_topic_prefix="t.", offload_topic_partitions=4)
    rendered: Any = faust_topic(cast(Any, _RecordingApp()), CASE_EVENTS, settings)
    name, options = rendered
    assert name == "t.case-events"
    assert options == {
        "partitions": 4,
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }


def test_the_registry_and_the_schemas_need_no_kafka_client() -> None:
    probe = (
        "import sys, offload_bridge.schemas.answers, offload_bridge.schemas.case_requests;"
        "assert 'offload_bridge.topics' not in sys.modules, 'schemas import the registry';"
        "import offload_bridge.topics;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'faust', 'kafka', 'aiokafka', 'fastapi'}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
