"""``offload-bridge acls``: each role's bindings for a principal, printed three ways or applied.

The bindings come from ``offload_bridge.roles``. Printed as a table, as ``kafka-acls.sh`` commands, or as
Strimzi resources (a ``KafkaUser`` per principal with its ACLs, a ``KafkaTopic`` per topic of the registry);
``--apply`` creates them with the Admin API, skipping the ACLs that already exist.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from offload_bridge.roles import Binding, Operation, PatternType, ResourceType, Role, bindings
from offload_bridge.settings import Settings
from offload_bridge.topics import ALL_TOPICS, topic_name

ANY_HOST = "*"
# Strimzi's API version of KafkaUser and KafkaTopic (Strimzi 0.49 and later; 0.48 and earlier take the same
# fields as kafka.strimzi.io/v1beta2).
STRIMZI_API = "kafka.strimzi.io/v1"
STRIMZI_CLUSTER_LABEL = "strimzi.io/cluster"
_PRINCIPAL_NAME = re.compile(r"[^\s:]+(?::[^\s]*)?")  # what follows User: (a TLS name may hold ':')
_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class AclsError(ValueError):
    """A bad ``--principal`` or a resource name Kubernetes refuses; one line."""


@dataclass(frozen=True)
class Grant:
    """One role's binding, for one principal."""

    principal: str  # User:name
    binding: Binding


def parse_principal(text: str) -> tuple[Role, str]:
    """``ROLE=User:NAME`` (or ``ROLE=NAME``, taken as ``User:NAME``). Raises AclsError."""
    role_text, sep, principal = text.partition("=")
    roles = ", ".join(Role)
    if not sep:
        raise AclsError(f"--principal {text!r}: expected ROLE=User:NAME, ROLE one of {roles}")
    try:
        role = Role(role_text.strip())
    except ValueError:
        raise AclsError(f"--principal {text!r}: unknown role {role_text!r}; one of {roles}") from None
    principal = principal.strip()
    if ":" in principal and not principal.startswith("User:"):
        kind = principal.split(":", 1)[0]
        raise AclsError(f"--principal {text!r}: expected User:NAME, got a principal of type {kind!r}")
    name = principal.removeprefix("User:")
    if not _PRINCIPAL_NAME.fullmatch(name):
        raise AclsError(f"--principal {text!r}: expected User:NAME (a name without spaces)")
    return role, f"User:{name}"


def grants(principals: list[tuple[Role, str]], settings: Settings) -> list[Grant]:
    """The bindings of every (role, principal), in the order of ``Role``; a role not given has none."""
    given = sorted(set(principals), key=lambda item: (list(Role).index(item[0]), item[1]))
    return [Grant(principal, binding) for role, principal in given for binding in bindings([role], settings)]


# --- table ------------------------------------------------------------------------------------------


def render_table(granted: list[Grant]) -> str:
    header = ("ROLE", "PRINCIPAL", "RESOURCE", "PATTERN", "NAME", "OPERATIONS")
    rows = [
        (
            str(grant.binding.role),
            grant.principal,
            str(grant.binding.resource.type),
            str(grant.binding.resource.pattern),
            grant.binding.resource.name,
            ",".join(grant.binding.operations),
        )
        for grant in granted
    ]
    widths = [max(len(row[column]) for row in (header, *rows)) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    )


# --- kafka-acls.sh ----------------------------------------------------------------------------------


def render_kafka_acls(granted: list[Grant], settings: Settings) -> str:
    """One ``kafka-acls.sh --add`` per binding, run with a super user's client properties."""
    lines = [
        "# Run as a principal allowed to change ACLs (a super user); admin.properties holds its client",
        "# settings (security.protocol, sasl.mechanism, sasl.jaas.config, ssl.truststore.location, ...).",
    ]
    role: Role | None = None
    for grant in granted:
        binding = grant.binding
        if binding.role is not role:
            role = binding.role
            lines.append(f"# role {role}")
        resource = binding.resource
        command = [
            "kafka-acls.sh", "--bootstrap-server", settings.bootstrap_servers,
            "--command-config", "admin.properties", "--add", "--allow-principal", grant.principal,
        ]  # fmt: skip
        for operation in binding.operations:
            command += ["--operation", str(operation)]
        command += [f"--{resource.type}", resource.name]
        if resource.pattern is PatternType.PREFIXED:
            command += ["--resource-pattern-type", "prefixed"]
        lines.append(shlex.join(command))
    return "\n".join(lines)


# --- Strimzi ----------------------------------------------------------------------------------------


def kubernetes_name(name: str) -> str:
    """``name`` when Kubernetes takes it as a resource name, else a valid name derived from it (lower case,
    other characters as '-', a hash of the original so two names never meet)."""
    if len(name) <= 253 and _K8S_NAME.fullmatch(name):
        return name
    cleaned = re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip("-.")[:200] or "x"
    return f"{cleaned}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def strimzi_topics(settings: Settings, cluster: str) -> list[dict[str, Any]]:
    """A KafkaTopic for every topic of the registry: partitions, replicas and the configs ``topics create``
    sets."""
    resources = []
    for spec in ALL_TOPICS:
        name = topic_name(spec, settings)
        resource_spec: dict[str, Any] = {
            "partitions": settings.offload_topic_partitions,
            "replicas": settings.offload_topic_replication,
            "config": {key: _config_value(value) for key, value in spec.config(settings).items()},
        }
        if kubernetes_name(name) != name:
            resource_spec["topicName"] = name
        resources.append(
            {
                "apiVersion": STRIMZI_API,
                "kind": "KafkaTopic",
                "metadata": {"name": kubernetes_name(name), "labels": {STRIMZI_CLUSTER_LABEL: cluster}},
                "spec": resource_spec,
            }
        )
    return resources


def strimzi_users(granted: list[Grant], cluster: str) -> list[dict[str, Any]]:
    """A KafkaUser per principal, with the ACLs of every role it was given. ``User:CN=name`` is a TLS client
    (Strimzi's principal for a certificate it issues); any other name authenticates with SCRAM-SHA-512."""
    by_principal: dict[str, list[Binding]] = {}
    for grant in granted:
        by_principal.setdefault(grant.principal, []).append(grant.binding)
    users = []
    for principal, held in by_principal.items():
        name = principal.removeprefix("User:")
        tls = name.startswith("CN=")
        user_name = name.removeprefix("CN=") if tls else name
        spec: dict[str, Any] = {
            "authentication": {"type": "tls" if tls else "scram-sha-512"},
            "authorization": {
                "type": "simple",
                "acls": [
                    {
                        "resource": {
                            "type": str(binding.resource.type),
                            "name": binding.resource.name,
                            "patternType": "prefix"
                            if binding.resource.pattern is PatternType.PREFIXED
                            else "literal",
                        },
                        "operations": [str(operation) for operation in binding.operations],
                        "host": ANY_HOST,
                    }
                    for binding in held
                ],
            },
        }
        if kubernetes_name(user_name) != user_name:
            # Strimzi's principal is the KafkaUser's name (CN=<name> for TLS), and it has no other field.
            raise AclsError(
                f"{principal}: Strimzi names a user after its KafkaUser resource, and {user_name!r} is not a"
                " valid Kubernetes name (lower case letters, digits, '-' and '.')"
            )
        metadata = {"name": user_name, "labels": {STRIMZI_CLUSTER_LABEL: cluster}}
        users.append({"apiVersion": STRIMZI_API, "kind": "KafkaUser", "metadata": metadata, "spec": spec})
    return users


def render_strimzi(granted: list[Grant], settings: Settings, cluster: str) -> str:
    import yaml

    documents = [*strimzi_topics(settings, cluster), *strimzi_users(granted, cluster)]
    return yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True).rstrip()


def _config_value(value: str) -> int | str:
    """A topic config as Strimzi examples write it: numbers as numbers."""
    return int(value) if re.fullmatch(r"-?[0-9]+", value) else value


# --- apply ------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Acl:
    """One ACL as Kafka stores it: one operation, allowed from any host."""

    principal: str
    resource_type: ResourceType
    name: str
    pattern: PatternType
    operation: Operation

    def __str__(self) -> str:
        star = "*" if self.pattern is PatternType.PREFIXED else ""
        return f"{self.principal} {self.operation} {self.resource_type}:{self.name}{star}"


@dataclass
class ApplyReport:
    created: list[Acl] = field(default_factory=list)
    existing: list[Acl] = field(default_factory=list)


def acls_of(granted: list[Grant]) -> list[Acl]:
    return sorted(
        {
            Acl(grant.principal, grant.binding.resource.type, grant.binding.resource.name,
                grant.binding.resource.pattern, operation)
            for grant in granted
            for operation in grant.binding.operations
        }
    )  # fmt: skip


class ApplyFailed(RuntimeError):
    """The cluster refused to list or create ACLs; the message says why in one line."""


def apply(granted: list[Grant], settings: Settings) -> ApplyReport:
    """Create every ACL of ``granted`` that the cluster does not have yet. Raises ApplyFailed,
    KafkaUnreachable."""
    from kafka.errors import ClusterAuthorizationFailedError, KafkaError, SecurityDisabledError

    from offload_bridge.kafka.connection import admin_for

    wanted = acls_of(granted)
    admin = admin_for(settings)
    try:
        present: set[Acl] = set()
        for principal in sorted({acl.principal for acl in wanted}):
            present.update(_existing(admin, principal))
        report = ApplyReport(
            created=[acl for acl in wanted if acl not in present],
            existing=[acl for acl in wanted if acl in present],
        )
        if report.created:
            result = admin.create_acls([_kafka_acl(acl) for acl in report.created])
            if result["failed"]:
                reasons = sorted({type(error).__name__ if isinstance(error, Exception) else error.__name__
                                  for error in result["failed"]})  # fmt: skip
                raise ApplyFailed(f"Kafka refused {len(result['failed'])} ACL(s): {', '.join(reasons)}")
        return report
    except SecurityDisabledError:
        raise ApplyFailed(
            f"Kafka at {settings.bootstrap_servers} has no authorizer (SecurityDisabled): there are no ACLs"
            " to apply; set authorizer.class.name on the brokers and controllers"
        ) from None
    except ClusterAuthorizationFailedError:
        who = settings.kafka_sasl_username or "this client"
        raise ApplyFailed(
            f"{who} may not list or create ACLs at {settings.bootstrap_servers} (ClusterAuthorizationFailed):"
            " apply them as a super user or a principal allowed Alter and Describe on the cluster"
        ) from None
    except KafkaError as error:
        raise ApplyFailed(f"Kafka at {settings.bootstrap_servers}: {type(error).__name__}: {error}") from None
    finally:
        admin.close()


def _existing(admin: Any, principal: str) -> set[Acl]:
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
    )
    from kafka.admin import ResourceType as KafkaResourceType

    any_resource = ResourcePatternFilter(KafkaResourceType.ANY, None, ACLResourcePatternType.ANY)
    query = ACLFilter(principal, None, ACLOperation.ANY, ACLPermissionType.ALLOW, any_resource)
    found, _ = admin.describe_acls(query)
    types = {KafkaResourceType.TOPIC: ResourceType.TOPIC, KafkaResourceType.GROUP: ResourceType.GROUP}
    patterns = {
        ACLResourcePatternType.LITERAL: PatternType.LITERAL,
        ACLResourcePatternType.PREFIXED: PatternType.PREFIXED,
    }
    operations = {operation.name: operation for operation in Operation}
    present = set()
    for acl in found:
        pattern = acl.resource_pattern
        kind, style = types.get(pattern.resource_type), patterns.get(pattern.pattern_type)
        operation = operations.get(acl.operation.name)
        if acl.host == ANY_HOST and kind is not None and style is not None and operation is not None:
            present.add(Acl(acl.principal, kind, pattern.resource_name, style, operation))
    return present


def _kafka_acl(acl: Acl) -> Any:
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern
    from kafka.admin import ResourceType as KafkaResourceType

    pattern = ResourcePattern(
        KafkaResourceType[acl.resource_type.name],
        acl.name,
        ACLResourcePatternType[acl.pattern.name],
    )
    return ACL(acl.principal, ANY_HOST, ACLOperation[acl.operation.name], ACLPermissionType.ALLOW, pattern)
