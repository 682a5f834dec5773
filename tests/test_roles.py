"""Kafka roles derived from the topic registry, and ``offload-bridge acls`` printing them (no broker but for
``--apply`` on a cluster without an authorizer).

The enforcement itself (ACLs applied, each part under its own principal) is tests/test_acls_enforced.py.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from offload_bridge import acls
from offload_bridge.analytics.tables import FACT_TABLES
from offload_bridge.dlq import QUEUES
from offload_bridge.roles import (
    ROLE_OF,
    Binding,
    Operation,
    PatternType,
    ResourceType,
    Role,
    RolesConflict,
    bindings,
    role_bindings,
    worker_internal_prefix,
)
from offload_bridge.settings import Settings
from offload_bridge.topics import (
    ALL_TOPICS,
    ANSWER_OUTCOMES,
    ANSWERS,
    CASE_EVENTS,
    CASE_EVENTS_INVALID,
    CASE_REQUESTS,
    CASE_STATE,
    CASE_WATCH,
    Party,
    topic_name,
)

CRDS = Path(__file__).parent.parent / "deploy" / "strimzi" / "crds"
SETTINGS = Settings(offload_topic_prefix="acme.offload.")
WRITING = {Operation.WRITE, Operation.CREATE, Operation.ALTER_CONFIGS}


def _topics(role: Role, operation: Operation, settings: Settings = SETTINGS) -> set[str]:
    """The registry topics (names without prefix) on which ``role`` is allowed ``operation``."""
    names = {topic_name(spec, settings): spec.name for spec in ALL_TOPICS}
    return {
        names[binding.resource.name]
        for binding in role_bindings(role, settings)
        if binding.resource.type is ResourceType.TOPIC
        and binding.resource.pattern is PatternType.LITERAL
        and operation in binding.operations
    }


def _others(role: Role, settings: Settings = SETTINGS) -> list[Binding]:
    """A role's bindings on anything but a registry topic."""
    registry = {topic_name(spec, settings) for spec in ALL_TOPICS}
    return [
        binding
        for binding in role_bindings(role, settings)
        if binding.resource.type is not ResourceType.TOPIC or binding.resource.name not in registry
    ]


def test_every_party_of_the_registry_has_a_role_and_every_role_a_party() -> None:
    assert set(ROLE_OF) == set(Party)
    assert set(ROLE_OF.values()) == set(Role)
    assert {party for party, role in ROLE_OF.items() if role is Role.WORKER} == {
        party for party in Party if party.in_worker
    }


def test_topic_permissions_are_the_registry_writers_and_readers() -> None:
    for role in Role:
        for spec in ALL_TOPICS:
            writes = any(ROLE_OF[party] is role for party in spec.writers)
            reads = any(ROLE_OF[party] is role for party in spec.readers)
            assert (spec.name in _topics(role, Operation.WRITE)) == writes, (role, spec.name)
            assert (spec.name in _topics(role, Operation.READ)) == reads, (role, spec.name)


def test_teams_publish_answers_requests_and_watches_and_read_only_their_outcomes() -> None:
    assert _topics(Role.TEAMS, Operation.WRITE) == {ANSWERS.name, CASE_REQUESTS.name, CASE_WATCH.name}
    assert _topics(Role.TEAMS, Operation.READ) == {"answer-outcomes", "case-request-outcomes"}
    forged = {CASE_EVENTS.name, CASE_STATE.name} | {
        spec.name for spec in ALL_TOPICS if "outcome" in spec.name
    }
    for operation in WRITING:
        assert not _topics(Role.TEAMS, operation) & forged
    assert _others(Role.TEAMS) == []  # their clients read by assignment, in no group


def test_the_inbox_writes_only_answers_and_reads_the_questions_and_their_history() -> None:
    assert _topics(Role.INBOX, Operation.WRITE) == {ANSWERS.name}
    assert _topics(Role.INBOX, Operation.READ) == {
        CASE_STATE.name, CASE_EVENTS.name, ANSWERS.name, ANSWER_OUTCOMES.name,
    }  # fmt: skip
    forged = {CASE_EVENTS.name, CASE_STATE.name} | {
        spec.name for spec in ALL_TOPICS if "outcome" in spec.name
    }
    for operation in WRITING:
        assert not _topics(Role.INBOX, operation) & forged
    for binding in role_bindings(Role.INBOX, SETTINGS):
        assert set(binding.operations) <= {Operation.READ, Operation.WRITE}, binding
    assert _others(Role.INBOX) == []  # it reads by assignment, in no group


def test_readers_write_nothing_and_join_only_their_own_groups() -> None:
    for binding in role_bindings(Role.READER, SETTINGS):
        assert not set(binding.operations) & WRITING, binding
    assert _topics(Role.READER, Operation.READ) == {
        "case-events", "case-state", "answer-outcomes", "case-request-outcomes",
    }  # fmt: skip
    [group] = _others(Role.READER)
    assert (group.resource.type, group.resource.pattern) == (ResourceType.GROUP, PatternType.PREFIXED)
    assert group.resource.name == "acme.offload.reader."
    own = Settings(offload_topic_prefix="acme.offload.", offload_reader_group_prefix="analytics-")
    assert _others(Role.READER, own)[0].resource.name == "analytics-"


def test_the_ingress_writes_only_the_event_topics_and_reads_nothing() -> None:
    assert _topics(Role.INGRESS, Operation.WRITE) == {CASE_EVENTS.name, CASE_EVENTS_INVALID.name}
    for binding in role_bindings(Role.INGRESS, SETTINGS):
        assert binding.operations == (Operation.WRITE,), binding
    assert _others(Role.INGRESS) == []


def test_the_exporter_reads_what_it_exports_in_its_own_group() -> None:
    exported = {table.topic.name for table in FACT_TABLES if table.topic is not None}
    assert _topics(Role.EXPORTER, Operation.READ) == exported
    assert {
        operation for binding in role_bindings(Role.EXPORTER, SETTINGS) for operation in binding.operations
    } == {Operation.READ}
    assert [binding.resource.name for binding in _others(Role.EXPORTER)] == [SETTINGS.export_group]


def test_the_operator_manages_every_topic_and_redrives_in_the_dlq_groups() -> None:
    for operation in (
        Operation.CREATE,
        Operation.DESCRIBE,
        Operation.DESCRIBE_CONFIGS,
        Operation.ALTER_CONFIGS,
    ):
        assert _topics(Role.OPERATOR, operation) == {spec.name for spec in ALL_TOPICS}
    # dlq redrive writes where each queue redrives to; reconcile writes case-events.
    redriven = {queue.redrive_to.name for queue in QUEUES.values()}
    assert _topics(Role.OPERATOR, Operation.WRITE) == redriven | {CASE_EVENTS.name}
    groups = {binding.resource.name for binding in _others(Role.OPERATOR)}
    assert groups == {queue.group(SETTINGS) for queue in QUEUES.values()}


def test_the_worker_owns_its_group_and_every_topic_faust_makes_for_it(tmp_path: Path) -> None:
    from offload_bridge.streams.app import create_app

    settings = Settings(offload_topic_prefix="acme.offload.", offload_worker_data_dir=tmp_path)
    app = create_app(settings).app
    made = [table.changelog_topic.get_topic_name() for table in app.tables.values()]
    leader: Any = app._leader_assignor  # Faust names its leader topic there
    made.append(leader._leader_topic_name)
    assert len(made) > 2
    internal = worker_internal_prefix(settings)
    assert all(name.startswith(internal) for name in made), made
    prefixed = [
        binding for binding in _others(Role.WORKER, settings) if binding.resource.type is ResourceType.TOPIC
    ]
    assert [(b.resource.name, b.resource.pattern) for b in prefixed] == [(internal, PatternType.PREFIXED)]
    assert set(prefixed[0].operations) == {Operation.READ, Operation.WRITE, Operation.CREATE}
    groups = [binding.resource.name for binding in _others(Role.WORKER, settings)
              if binding.resource.type is ResourceType.GROUP]  # fmt: skip
    assert groups == [app.conf.id] == [settings.worker_app_id]


def test_prefixes_that_would_reach_another_roles_resources_are_refused() -> None:
    with pytest.raises(RolesConflict, match="OFFLOAD_WORKER_APP_ID"):
        bindings(Role, Settings(offload_topic_prefix="acme.", offload_worker_app_id="acme.case"))
    with pytest.raises(RolesConflict, match="OFFLOAD_READER_GROUP_PREFIX"):
        bindings(Role, Settings(offload_topic_prefix="acme.", offload_reader_group_prefix="acme.exp"))


# --- the command -----------------------------------------------------------------------------------


def _acls(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offload_bridge.cli", "acls", *args],
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "OFFLOAD_TOPIC_PREFIX": "acme.offload.", **(env or {})},
    )  # fmt: skip


ALL_ROLES = [f"--principal={role}=User:{role}-svc" for role in Role]


def test_the_table_lists_each_given_role_and_leaves_the_others_out() -> None:
    done = _acls("--principal", "teams=billing", "--principal", "reader=User:warehouse")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["ROLE", "PRINCIPAL", "RESOURCE", "PATTERN", "NAME", "OPERATIONS"]
    expected = [
        (b.role.value, principal, b.resource.name, ",".join(b.operations))
        for role, principal in ((Role.TEAMS, "User:billing"), (Role.READER, "User:warehouse"))
        for b in role_bindings(role, SETTINGS)
    ]
    assert [(r.split()[0], r.split()[1], r.split()[4], r.split()[5]) for r in rows] == expected


@pytest.mark.parametrize(
    ("principal", "said"),
    [
        ("auditor=User:x", "unknown role 'auditor'"),
        ("teams", "expected ROLE=User:NAME"),
        ("teams=Group:billing", "type 'Group'"),
        ("teams=User:", "expected User:NAME"),
        ("teams=two words", "expected User:NAME"),
    ],
)
def test_a_bad_principal_is_one_line_and_exit_2(principal: str, said: str) -> None:
    done = _acls("--principal", principal)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert said in done.stderr and "Traceback" not in done.stderr


def test_kafka_acls_commands_say_each_binding_once() -> None:
    done = _acls(*ALL_ROLES, "--format", "kafka-acls", env={"KAFKA_BOOTSTRAP_SERVERS": "kafka.acme:9093"})
    assert done.returncode == 0, done.stderr
    commands = [shlex.split(line) for line in done.stdout.splitlines() if not line.startswith("#")]
    expected = bindings(Role, SETTINGS)
    assert len(commands) == len(expected)
    for command, binding in zip(commands, expected, strict=True):
        assert command[:8] == [
            "kafka-acls.sh", "--bootstrap-server", "kafka.acme:9093", "--command-config", "admin.properties",
            "--add", "--allow-principal", f"User:{binding.role}-svc",
        ]  # fmt: skip
        rest = command[8:]
        operations = [rest[i + 1] for i, word in enumerate(rest) if word == "--operation"]
        assert operations == [str(operation) for operation in binding.operations]
        assert rest[rest.index(f"--{binding.resource.type}") + 1] == binding.resource.name
        prefixed = binding.resource.pattern is PatternType.PREFIXED
        assert ("--resource-pattern-type" in rest) == prefixed
        if prefixed:
            assert rest[rest.index("--resource-pattern-type") + 1] == "prefixed"


def _crd_schema(path: Path, version: str) -> dict[str, Any]:
    crd = yaml.safe_load(path.read_text())
    [served] = [entry for entry in crd["spec"]["versions"] if entry["name"] == version]
    schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
    return schema


def _strict(schema: Any) -> Any:
    """The schema as the API server applies it: a structural schema prunes unknown fields, which
    jsonschema would let through, so unknown fields are made errors (except where the CRD keeps them)."""
    if isinstance(schema, dict):
        strict = {key: _strict(value) for key, value in schema.items()}
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            strict.setdefault("additionalProperties", False)
        return strict
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def test_strimzi_resources_validate_against_strimzis_crds() -> None:
    done = _acls(*ALL_ROLES, "--principal", "teams=User:CN=billing", "--format", "strimzi",
                 "--strimzi-cluster", "prod")  # fmt: skip
    assert done.returncode == 0, done.stderr
    documents = list(yaml.safe_load_all(done.stdout))
    version = acls.STRIMZI_API.rsplit("/", 1)[1]
    schemas = {
        "KafkaTopic": _strict(_crd_schema(CRDS / "043-Crd-kafkatopic.yaml", version)),
        "KafkaUser": _strict(_crd_schema(CRDS / "044-Crd-kafkauser.yaml", version)),
    }
    for document in documents:
        assert document["apiVersion"] == acls.STRIMZI_API
        assert document["metadata"]["labels"] == {"strimzi.io/cluster": "prod"}
        jsonschema.validate(document, schemas[document["kind"]])
    topics = {doc["metadata"]["name"]: doc["spec"] for doc in documents if doc["kind"] == "KafkaTopic"}
    assert set(topics) == {topic_name(spec, SETTINGS) for spec in ALL_TOPICS}
    for spec in ALL_TOPICS:
        declared = topics[topic_name(spec, SETTINGS)]
        assert (declared["partitions"], declared["replicas"]) == (6, 1)
        assert {key: str(value) for key, value in declared["config"].items()} == spec.config(SETTINGS)
    users = {doc["metadata"]["name"]: doc["spec"] for doc in documents if doc["kind"] == "KafkaUser"}
    assert set(users) == {f"{role}-svc" for role in Role} | {"billing"}
    assert users["billing"]["authentication"] == {"type": "tls"}
    assert users["reader-svc"]["authentication"] == {"type": "scram-sha-512"}
    reader_acls = users["reader-svc"]["authorization"]["acls"]
    assert len(reader_acls) == len(role_bindings(Role.READER, SETTINGS))
    assert reader_acls[-1]["resource"] == {
        "type": "group",
        "name": "acme.offload.reader.",
        "patternType": "prefix",
    }


def test_a_wrong_field_fails_strimzis_schema() -> None:
    """The check above can fail: a misspelt operation or an unknown field is refused."""
    user = acls.strimzi_users(acls.grants([(Role.READER, "User:r")], SETTINGS), "prod")[0]
    schema = _strict(_crd_schema(CRDS / "044-Crd-kafkauser.yaml", "v1"))
    jsonschema.validate(user, schema)
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Reed"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(user, schema)
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Read"]
    user["spec"]["authorization"]["acls"][0]["resource"]["pattern"] = "prefix"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(user, schema)


def test_a_topic_name_kubernetes_refuses_is_kept_beside_a_valid_one() -> None:
    settings = Settings(offload_topic_prefix="Acme_Offload.")
    [topic, *_] = acls.strimzi_topics(settings, "prod")
    assert topic["spec"]["topicName"] == "Acme_Offload.case-events"
    assert topic["metadata"]["name"].startswith("acme-offload.case-events-")
    jsonschema.validate(topic, _strict(_crd_schema(CRDS / "043-Crd-kafkatopic.yaml", "v1")))


def test_a_user_name_kubernetes_refuses_is_one_line_for_strimzi() -> None:
    done = _acls("--principal", "teams=User:Billing_Team", "--format", "strimzi")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "'Billing_Team' is not a valid Kubernetes name" in done.stderr


def test_apply_on_a_cluster_without_an_authorizer_is_one_line(kafka_broker: str) -> None:
    done = _acls("--principal", "teams=User:t", "--apply", env={"KAFKA_BOOTSTRAP_SERVERS": kafka_broker})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"offload-bridge: Kafka at {kafka_broker} has no authorizer (SecurityDisabled): there are no ACLs to"
        " apply; set authorizer.class.name on the brokers and controllers"
    ]
