"""Create and inspect the project's topics with kafka-python's admin client."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka.errors import KafkaError, TopicAlreadyExistsError, TopicAuthorizationFailedError, for_code

from offload_bridge.kafka.connection import KafkaUnreachable, NotAuthorized, admin_for, principal_of
from offload_bridge.settings import Settings
from offload_bridge.topics import ALL_TOPICS, TopicSpec, topic_name


class TopicCreationFailed(RuntimeError):
    """The broker refused to create a topic for a reason other than its existence."""


@dataclass
class TopicsReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    # Existing topics whose partition count differs from OFFLOAD_TOPIC_PARTITIONS: co-partitioning is off.
    mismatched: dict[str, int] = field(default_factory=dict)


def ensure_topics(settings: Settings, specs: Iterable[TopicSpec] = ALL_TOPICS) -> TopicsReport:
    """Create every missing topic with the registry's configs; idempotent. An existing topic is left as it
    is (``topic_configs.check_configs`` compares it). Raises KafkaUnreachable or TopicCreationFailed."""
    return _ensure_configs(settings, {topic_name(spec, settings): spec.config(settings) for spec in specs})


def ensure_changelog_topics(settings: Settings, names: Iterable[str]) -> TopicsReport:
    """Create the worker's table changelogs (compacted, co-partitioned) before Faust starts.

    Faust would create them itself at start-up, but its consumer can take its first metadata while they
    are still being created; a table whose changelog shows no partitions there refuses every write
    (PartitionsMismatch) until the metadata is next refreshed, minutes later.
    """
    return _ensure_configs(settings, {name: {"cleanup.policy": "compact"} for name in names})


def _ensure_configs(settings: Settings, wanted: dict[str, dict[str, str]]) -> TopicsReport:
    admin = admin_for(settings)
    try:
        return _ensure(admin, wanted, settings)
    except KafkaError as error:
        raise KafkaUnreachable(
            f"Kafka at {settings.bootstrap_servers}: {type(error).__name__}: {error}"
        ) from None
    finally:
        admin.close()


def _ensure(admin: Any, wanted: dict[str, dict[str, str]], settings: Settings) -> TopicsReport:
    report = TopicsReport()
    present = set(admin.list_topics())
    missing = {name: configs for name, configs in wanted.items() if name not in present}
    if missing:
        request = {
            name: {
                "num_partitions": settings.offload_topic_partitions,
                "replication_factor": settings.offload_topic_replication,
                "configs": configs,
            }
            for name, configs in missing.items()
        }
        response = admin.create_topics(request, raise_errors=False, wait_for_metadata=False)
        for topic in response["topics"]:
            error = for_code(topic["error_code"])
            if topic["error_code"] == 0:
                report.created.append(topic["name"])
            elif error is TopicAlreadyExistsError:
                # Another process created it between our listing and our request.
                report.existing.append(topic["name"])
            elif error is TopicAuthorizationFailedError:
                refused = NotAuthorized(
                    principal_of(settings), "create", f"topic {topic['name']}", "TopicAuthorizationFailed"
                )
                raise TopicCreationFailed(f"{refused} (topics are made by the operator's `topics create`)")
            else:
                reason = topic.get("error_message") or error.__name__
                raise TopicCreationFailed(f"creating topic {topic['name']} failed: {reason}")
        admin.wait_for_topics(report.created)
    already = [name for name in wanted if name in present]
    report.existing.extend(already)
    for description in admin.describe_topics(already) if already else []:
        partitions = len(description["partitions"])
        if partitions != settings.offload_topic_partitions:
            report.mismatched[description["name"]] = partitions
    report.created.sort()
    report.existing.sort()
    return report
