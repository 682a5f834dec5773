"""Compare existing topics' configs with the registry (``topics check``) and align them (``topics apply``).

Only the configs the registry declares for a topic (``TopicSpec.config``: ``cleanup.policy``,
``retention.ms``, ``max.message.bytes``) are compared and set; any other config of the topic (a
``segment.ms`` or ``min.insync.replicas`` someone chose) is neither reported nor touched.

Aligning uses IncrementalAlterConfigs (Kafka 2.3 and later), which sets the configs it is given and leaves
every other one as it is. kafka-python's ``alter_configs`` would fall back on older brokers to the legacy
AlterConfigs, which *replaces* all of a topic's dynamic configs (a config not sent returns to the
broker's default), papered over by reading them first and sending them back, a race with anyone changing
them meanwhile. We ask for ``incremental=True``, so such a broker fails in one line instead.

Nothing is shortened silently: a change after which a topic keeps fewer records (a lower ``retention.ms``,
-1 being forever; compaction, or deletion by time, where there was none) is applied only when asked
(``allow_shorter``) and otherwise refused; the topic's other changes are still applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError

from offload_bridge.kafka.connection import KafkaUnreachable, admin_for
from offload_bridge.settings import DAY_MS, Settings
from offload_bridge.topics import ALL_TOPICS, TopicSpec, topic_name

SHORTER_FLAG = "--allow-shorter-retention"
_LIMITS = ("retention.ms", "retention.bytes")  # -1: no limit
_LISTS = ("cleanup.policy",)  # comma-separated, order free


class TopicConfigsFailed(RuntimeError):
    """The broker would not show or change a topic's configs (authorization, an invalid value)."""


@dataclass(frozen=True)
class ConfigDrift:
    """One config of one existing topic that differs from the registry."""

    topic: str
    config: str
    current: str
    wanted: str

    @property
    def shortens(self) -> bool:
        """Applying it would make the topic keep fewer records."""
        if self.config in _LIMITS:
            return _limit(self.wanted) < _limit(self.current)
        if self.config == "cleanup.policy":
            # Compaction drops all but the latest record of a key; deletion drops records by age. Either,
            # where the topic did not have it, removes records it keeps today.
            return bool(_items(self.wanted) - _items(self.current))
        return False

    def difference(self) -> str:
        wanted = shown(self.config, self.wanted)
        return f"{self.config} is {shown(self.config, self.current)}, the registry says {wanted}"

    def change(self) -> str:
        return f"{self.config} {shown(self.config, self.current)} -> {shown(self.config, self.wanted)}"


@dataclass
class ConfigReport:
    """What ``topics check`` found: topics that do not exist, and configs that differ."""

    missing: list[str] = field(default_factory=list)
    drifts: list[ConfigDrift] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.missing and not self.drifts


@dataclass
class ApplyReport:
    """What ``topics apply`` did: configs set, changes left out because they would shorten a topic, and
    topics whose changes the broker refused (topic -> its reason)."""

    checked: ConfigReport
    applied: list[ConfigDrift] = field(default_factory=list)
    refused: dict[str, list[ConfigDrift]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def shown(config: str, value: str) -> str:
    """A value as the broker spells it, with retention.ms in words too."""
    if config != "retention.ms" or not value.lstrip("-").isdigit():
        return value
    ms = int(value)
    if ms < 0:
        return f"{value} (forever)"
    for unit, size in (("day", DAY_MS), ("hour", 3_600_000), ("minute", 60_000)):
        if ms >= size and ms % size == 0:
            count = ms // size
            return f"{value} ({count} {unit}{'s' if count != 1 else ''})"
    return value


def check_configs(settings: Settings, specs: Iterable[TopicSpec] = ALL_TOPICS) -> ConfigReport:
    """Every declared config of every existing topic compared with the registry (read-only).

    Raises KafkaUnreachable or TopicConfigsFailed."""
    wanted = {topic_name(spec, settings): spec.config(settings) for spec in specs}
    admin = admin_for(settings)
    try:
        return _check(admin, wanted)
    except KafkaError as error:
        raise KafkaUnreachable(
            f"Kafka at {settings.bootstrap_servers}: {type(error).__name__}: {error}"
        ) from None
    finally:
        admin.close()


def apply_configs(
    settings: Settings, allow_shorter: bool = False, specs: Iterable[TopicSpec] = ALL_TOPICS
) -> ApplyReport:
    """Set every differing config to the registry's; a change that would shorten a topic is left out
    unless ``allow_shorter``. Raises KafkaUnreachable; a change the broker refuses is in ``failed``."""
    wanted = {topic_name(spec, settings): spec.config(settings) for spec in specs}
    admin = admin_for(settings)
    try:
        report = ApplyReport(_check(admin, wanted))
        changes: dict[str, list[ConfigDrift]] = {}
        for drift in report.checked.drifts:
            if drift.shortens and not allow_shorter:
                # Refused alone: the topic's other changes keep at least as much and are applied.
                report.refused.setdefault(drift.topic, []).append(drift)
            else:
                changes.setdefault(drift.topic, []).append(drift)
        if changes:
            resources = [
                ConfigResource(ConfigResourceType.TOPIC, topic, {d.config: d.wanted for d in drifts})
                for topic, drifts in changes.items()
            ]
            results = admin.alter_configs(resources, incremental=True, raise_on_unknown=False)
            for topic, drifts in changes.items():
                result = results.get("topic", {}).get(topic, "the broker did not answer for it")
                if result == "OK":
                    report.applied.extend(drifts)
                else:
                    report.failed[topic] = str(result)
        return report
    except KafkaError as error:
        raise KafkaUnreachable(
            f"Kafka at {settings.bootstrap_servers}: {type(error).__name__}: {error}"
        ) from None
    finally:
        admin.close()


def _check(admin: Any, wanted: dict[str, dict[str, str]]) -> ConfigReport:
    report = ConfigReport()
    present = set(admin.list_topics())
    report.missing = sorted(name for name in wanted if name not in present)
    existing = [name for name in wanted if name in present]
    if not existing:
        return report
    resources = [ConfigResource(ConfigResourceType.TOPIC, name, list(wanted[name])) for name in existing]
    # "all": the value in effect, also where it is the broker's default (a topic made without retention.ms
    # has log.retention.hours), which is what the topic actually keeps.
    described: dict[str, dict[str, dict[str, Any]]] = admin.describe_configs(
        resources, config_filter="all"
    ).get("topic", {})
    for name in sorted(existing):
        entries = described.get(name, {})
        for config, value in wanted[name].items():
            if config not in entries:
                # kafka-python drops a resource's error code; an authorized topic reports every config.
                raise TopicConfigsFailed(
                    f"Kafka did not show {config} of topic {name}: is DescribeConfigs on it allowed?"
                )
            current = str(entries[config]["value"])
            if not _same(config, current, value):
                report.drifts.append(ConfigDrift(name, config, current, value))
    return report


def _same(config: str, current: str, wanted: str) -> bool:
    if config in _LISTS:
        return _items(current) == _items(wanted)
    if current.lstrip("-").isdigit() and wanted.lstrip("-").isdigit():
        return int(current) == int(wanted)
    return current == wanted


def _items(value: str) -> set[str]:
    return {item.strip() for item in value.split(",") if item.strip()}


def _limit(value: str) -> float:
    number = int(value)
    return float("inf") if number < 0 else float(number)
