"""Kafka roles and their permissions, derived from the topic registry.

Each party of the registry (``topics.Party``) belongs to one role, and a role's topic permissions are what
its parties do there: Write where one of them writes, Read where one of them reads. There is no second list
of topics. What the registry does not hold is declared here, once: the consumer groups, the worker's
internal topics, and the operator's management of the topics.

Least privilege follows: ``teams`` writes only answers, case requests and case watches and reads only their
outcomes, so it can never forge what Offload said (case-events), our view of it (case-state) or an outcome;
``reader`` writes nothing; ``ingress`` writes case-events and case-events.invalid and reads nothing.

What no role needs:

- **Describe**, but for the operator's topics: Kafka implies it from Read and Write on a topic and from
  Read on a group, which is all a client's metadata, offset and group requests ask for. Create does not
  imply it, so ``topics create`` needs it to see a topic it made but does not read (the retry topics).
- **IdempotentWrite on the cluster**: every producer here is idempotent (acks=all), and since Kafka 3.0
  (KIP-679) Write on any topic allows a producer id; older clusters need IdempotentWrite on the cluster
  for the ingress, the worker, the teams, the inbox and the operator.
- **TransactionalId**: nothing here uses transactions (Faust runs at least once, without them).
- **A consumer group for the teams' clients, the inbox, ``tail``, ``dlq list`` and ``reconcile``**: they
  are assigned every partition of what they read and commit nothing.

A further Kafka client is a role of its own here, with a party in the registry. The browser inbox
(``inbox``) reads the questions and the case's history (case-state, case-events, answers, answer-outcomes)
and publishes answers: like ``teams`` it can never forge what Offload said, our view of it or an outcome,
and unlike ``teams`` it reads the answers themselves, to show who answered a question and what.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from offload_bridge.settings import Settings
from offload_bridge.topics import ALL_TOPICS, Party, TopicSpec, topic_name


class Role(StrEnum):
    """A Kafka principal's job; ``offload-bridge acls --principal ROLE=PRINCIPAL`` names one per role."""

    INGRESS = "ingress"  # publishes webhooks
    WORKER = "worker"  # the Faust worker: the state, answer, case-request and case-watch agents, reconciler
    TEAMS = "teams"  # publish answers, case requests and watches; read their outcomes
    OPERATOR = "operator"  # tail, dlq list|redrive, reconcile, topics create|check|apply
    READER = "reader"  # downstream services and analytics: what happened and the latest state, read only
    EXPORTER = "exporter"  # offload-bridge export: the history as Parquet tables
    INBOX = "inbox"  # offload-bridge inbox: people read questions and their history, and answer


ROLE_OF: dict[Party, Role] = {
    Party.INGRESS: Role.INGRESS,
    Party.STATE_AGENT: Role.WORKER,
    Party.ANSWER_AGENT: Role.WORKER,
    Party.CASE_REQUEST_AGENT: Role.WORKER,
    Party.RECONCILER: Role.WORKER,
    Party.CASE_WATCH_AGENT: Role.WORKER,
    Party.TEAMS: Role.TEAMS,
    Party.TEAM_COMMANDS: Role.TEAMS,
    Party.OPERATOR_COMMANDS: Role.OPERATOR,
    Party.READERS: Role.READER,
    Party.EXPORTER: Role.EXPORTER,
    Party.INBOX: Role.INBOX,
}


class ResourceType(StrEnum):
    TOPIC = "topic"
    GROUP = "group"


class PatternType(StrEnum):
    LITERAL = "literal"  # the name itself
    PREFIXED = "prefixed"  # every name that starts with it


class Operation(StrEnum):
    """Kafka's ACL operations, by the names Kafka's tools and Strimzi use."""

    READ = "Read"
    WRITE = "Write"
    CREATE = "Create"
    DESCRIBE = "Describe"
    DESCRIBE_CONFIGS = "DescribeConfigs"
    ALTER_CONFIGS = "AlterConfigs"


@dataclass(frozen=True, order=True)
class Resource:
    type: ResourceType
    name: str
    pattern: PatternType = PatternType.LITERAL

    def __str__(self) -> str:
        star = "*" if self.pattern is PatternType.PREFIXED else ""
        return f"{self.type}:{self.name}{star}"


@dataclass(frozen=True)
class Binding:
    """The operations one role is allowed on one resource."""

    role: Role
    resource: Resource
    operations: tuple[Operation, ...]


# `topics create|check|apply`: create a missing topic with its configs, see it (Describe: metadata, which
# Create does not imply), read its configs, align them.
_TOPIC_MANAGEMENT = (
    Operation.CREATE,
    Operation.DESCRIBE,
    Operation.DESCRIBE_CONFIGS,
    Operation.ALTER_CONFIGS,
)
_ORDER = {operation: index for index, operation in enumerate(Operation)}


def worker_internal_prefix(settings: Settings) -> str:
    """The prefix of every topic the worker makes for itself: Faust names them after its app id, as
    ``<app id>-<table>-changelog`` (``ensure_changelog_topics`` creates them before Faust starts) and
    ``<app id>-__assignor-__leader``; repartition topics would be ``<app id>-...-repartition``."""
    return f"{settings.worker_app_id}-"


def _groups(role: Role, settings: Settings) -> list[Resource]:
    """The consumer groups a role's clients join (Read on a group lets a member join, fetch and commit)."""
    if role is Role.WORKER:
        # Faust's consumer group is its app id.
        return [Resource(ResourceType.GROUP, settings.worker_app_id)]
    if role is Role.OPERATOR:
        # `dlq redrive --all` remembers how far it got in a group per queue.
        from offload_bridge.dlq import QUEUES

        return [Resource(ResourceType.GROUP, queue.group(settings)) for queue in QUEUES.values()]
    if role is Role.EXPORTER:
        return [Resource(ResourceType.GROUP, settings.export_group)]
    if role is Role.READER:
        return [Resource(ResourceType.GROUP, settings.reader_group_prefix, PatternType.PREFIXED)]
    return []


def _topic_operations(role: Role, spec: TopicSpec) -> set[Operation]:
    operations: set[Operation] = set()
    if any(ROLE_OF[party] is role for party in spec.writers):
        operations.add(Operation.WRITE)
    if any(ROLE_OF[party] is role for party in spec.readers):
        operations.add(Operation.READ)
    if role is Role.OPERATOR:
        operations.update(_TOPIC_MANAGEMENT)
    return operations


class RolesConflict(ValueError):
    """The settings make one role's resources overlap another's; the message says which setting."""


def check_names(settings: Settings) -> None:
    """Raise RolesConflict when a prefixed grant would reach what is not its role's: a registry topic
    under the worker's internal prefix, or another role's group under the readers' group prefix."""
    internal = worker_internal_prefix(settings)
    for spec in ALL_TOPICS:
        if topic_name(spec, settings).startswith(internal):
            raise RolesConflict(
                f"topic {topic_name(spec, settings)} starts with the worker's internal prefix {internal} "
                "(OFFLOAD_WORKER_APP_ID): choose an app id no topic name starts with"
            )
    prefix = settings.reader_group_prefix
    for role in Role:
        if role is Role.READER:
            continue
        for group in _groups(role, settings):
            if group.name.startswith(prefix):
                raise RolesConflict(
                    f"the {role} group {group.name} starts with the readers' group prefix {prefix} "
                    "(OFFLOAD_READER_GROUP_PREFIX): readers could join it"
                )


def role_bindings(role: Role, settings: Settings) -> list[Binding]:
    """Everything ``role`` is allowed: the registry's topics, then its own topics and groups."""
    bindings: list[Binding] = []

    def add(resource: Resource, operations: Iterable[Operation]) -> None:
        ordered = tuple(sorted(set(operations), key=_ORDER.__getitem__))
        if ordered:
            bindings.append(Binding(role, resource, ordered))

    for spec in ALL_TOPICS:
        add(Resource(ResourceType.TOPIC, topic_name(spec, settings)), _topic_operations(role, spec))
    if role is Role.WORKER:
        # Its changelogs and leader topic: made at start (Create), written and read back after a restart.
        internal = Resource(ResourceType.TOPIC, worker_internal_prefix(settings), PatternType.PREFIXED)
        add(internal, (Operation.READ, Operation.WRITE, Operation.CREATE))
    for group in _groups(role, settings):
        add(group, (Operation.READ,))
    return bindings


def bindings(roles: Iterable[Role], settings: Settings) -> list[Binding]:
    """The bindings of each role, in the order given. Raises RolesConflict (``check_names``)."""
    check_names(settings)
    return [binding for role in roles for binding in role_bindings(role, settings)]
