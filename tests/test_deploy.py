"""deploy/: the alert rules, their unit tests, the compose profile's Prometheus config and the Grafana
dashboard, checked with promtool (Debian's prometheus package, fetched by ``make .tools/promtool``) and
against the metrics a real ingress and a real worker serve; the Kubernetes manifests, checked against
Kubernetes' schemas (kubernetes-validate, strict), against the settings model and against the endpoints
their probes call."""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from offload_bridge.inbox.identity import parse_networks
from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.settings import Settings, SettingsError, load_settings
from offload_bridge.testing import (
    ServiceProcess,
    delete_topics_with_prefix,
    free_port,
    running,
    settings_env,
    unique_prefix,
)
from tests.inbox_support import running_inbox
from tests.ingress_support import JSON, running_ingress
from tests.streams_support import (
    SEED_INPUT_NEEDED,
    WORKER_READY_TIMEOUT_S,
    Worker,
    publish_webhook,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
ALERTS = PROMETHEUS / "alerts.yml"
ALERT_TESTS = ("alerts.test.yml", "alerts.daily.test.yml")
DASHBOARD = GRAFANA / "dashboards" / "offload-bridge.json"
# Series Prometheus makes itself for every target rather than reading them from /metrics.
PROMETHEUS_OWN = {"up"}
# What Grafana substitutes in a query before sending it, with a value of the same kind.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "6h"}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = ROOT / ".tools" / "promtool"
    if found.exists():
        return str(found)
    on_path = shutil.which("promtool")
    if on_path is None:
        pytest.fail("promtool is missing: `make .tools/promtool` unpacks it from Debian's prometheus package")
    return on_path


def run(command: list[str], cwd: Path = ROOT, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=60)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]
    return rules


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression: any name before a label matcher, and every one of ours."""
    return set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", expr)) | set(
        re.findall(r"\b(offload_[a-z0-9_]+)\b", expr)
    )


def exposed_names(exposition: str) -> set[str]:
    """Every series name a scrape of this text yields, families that have no sample yet included."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


# --- the alert rules ----------------------------------------------------------------------------------------


def test_alert_rules_pass_promtool_check(promtool: str) -> None:
    result = run([promtool, "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_every_alert_waits_has_a_severity_and_tells_the_operator_what_to_do() -> None:
    for rule in alert_rules():
        name = rule["alert"]
        assert rule.get("for"), f"{name} has no `for:`: one bad scrape would page"
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), name
        # Every description names a command, a setting or a page of the docs to go on with.
        description = annotations["description"]
        assert "`offload-bridge" in description or "docs: " in description, name


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for file in ALERT_TESTS:
        for case in load_yaml(PROMETHEUS / file)["tests"]:
            for check in case["alert_rule_test"]:
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts - fires == set(), "alerts never shown to fire"
    assert alerts - silent == set(), "alerts never shown to stay quiet"


def test_alert_unit_tests_pass(promtool: str) -> None:
    result = run([promtool, "test", "rules", *ALERT_TESTS], cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(ALERT_TESTS), result.stdout


# --- the observability profile ------------------------------------------------------------------------------


def test_compose_prometheus_config_passes_promtool_and_loads_the_alerts(
    promtool: str, tmp_path: Path
) -> None:
    # Checked as the container sees it: the rules beside the config, and the worker's token (which git
    # never holds) in secrets/, where promtool wants the file to exist.
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(PROMETHEUS / name, tmp_path / name)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "worker-api-token").write_text("a-token-of-sixteen-or-more")
    result = run([promtool, "check", "config", str(tmp_path / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    worker = next(job for job in config["scrape_configs"] if job["job_name"] == "offload-worker")
    assert worker["authorization"] == {"type": "Bearer", "credentials_file": "secrets/worker-api-token"}
    assert config["rule_files"] == ["alerts.yml"]
    # The job names the alerts select on.
    assert {job["job_name"] for job in config["scrape_configs"]} == {"offload-ingress", "offload-worker"}


def test_compose_observability_profile_mounts_the_config_the_rules_and_the_dashboard() -> None:
    services = load_yaml(ROOT / "docker-compose.yml")["services"]
    mounts: dict[str, dict[str, str]] = {}
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"]
        mounts[name] = {}
        for volume in services[name]["volumes"]:
            source, target = volume.split(":")[:2]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
                mounts[name][target] = source
    assert mounts["prometheus"] == {
        "/etc/prometheus/prometheus.yml": "./deploy/prometheus/prometheus.yml",
        "/etc/prometheus/alerts.yml": "./deploy/prometheus/alerts.yml",
        "/etc/prometheus/secrets": "./deploy/prometheus/secrets",
    }
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "offload-bridge.yml")["providers"][0]
    assert mounts["grafana"][provider["options"]["path"]] == "./deploy/grafana/dashboards"
    assert mounts["grafana"]["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    # The Prometheus Grafana reads is the compose service, and the dashboard's default data source.
    datasource = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    variable = json.loads(DASHBOARD.read_text())["templating"]["list"][0]
    assert (variable["name"], variable["current"]["value"]) == ("datasource", datasource["uid"])


# --- the dashboard ------------------------------------------------------------------------------------------


def test_dashboard_is_one_json_document_with_unique_panels_on_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "offload-bridge"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_dashboard_queries_parse(promtool: str, tmp_path: Path) -> None:
    """promtool has no expression check: each query becomes a recording rule of a file it checks."""
    rules = []
    for n, (title, expr) in enumerate(dashboard_queries()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{title}: a variable the test does not know: {expr}"
        rules.append({"record": f"dashboard:query_{n}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


# --- against real processes ---------------------------------------------------------------------------------


@dataclass
class Scrapes:
    ingress: str
    worker: str
    inbox: str
    # The three processes, still running while the module's tests run.
    ingress_url: str
    worker_url: str
    inbox_url: str
    # While the worker started: (offload_worker_ready in a scrape, what GET /ready answered right after it).
    startup: list[tuple[float, int]]


def readiness(exposition: str) -> float:
    found = re.search(r"^offload_worker_ready (\S+)$", exposition, re.MULTILINE)
    assert found, "no offload_worker_ready in the worker's metrics"
    return float(found.group(1))


@pytest.fixture(scope="module")
def scrapes(kafka_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scrapes]:
    """``GET /metrics`` of a real ingress and a real worker after one webhook went through both, and of a real
    inbox that read the question; and the worker's readiness as its metrics and ``GET /ready`` told it while
    it started."""
    settings = Settings(kafka_bootstrap_servers=kafka_broker, offload_topic_prefix=unique_prefix())
    ensure_topics(settings)
    workdir = tmp_path_factory.mktemp("scrape")
    worker = Worker(settings, workdir).start(wait=False)
    try:
        startup: list[tuple[float, int]] = []
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
        # The web server answers a few seconds before the tables are recovered.
        while not startup or startup[-1][1] != 200:
            assert time.monotonic() < deadline, f"the worker never got ready\n{worker.service.log_tail(40)}"
            try:
                metrics = worker.get("/metrics").text
                startup.append((readiness(metrics), httpx.get(f"{worker.url}/ready", timeout=5).status_code))
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        with (
            running_ingress(settings, workdir) as ingress,
            running_inbox(settings, workdir, {"OFFLOAD_WORKER_URLS": worker.url}) as inbox,
        ):
            answer = httpx.post(f"{ingress.url}/webhooks/offload", content=SEED_INPUT_NEEDED, headers=JSON)
            assert answer.status_code == 200, answer.text
            wait_for(lambda: worker.stats()["applied"] >= 1, what="the worker to fold the webhook")
            ingress_metrics = httpx.get(f"{ingress.url}/metrics", timeout=10).text
            deadline = time.monotonic() + 30
            while True:
                # The lag of case-events shows once the worker knows its partition's end offset.
                worker_metrics = worker.get("/metrics").text
                if "case-events" in worker_metrics or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            deadline = time.monotonic() + 30
            while True:
                # The inbox counts the question once the worker's fold reached case-state.
                inbox_metrics = httpx.get(f"{inbox.url}/metrics", timeout=10).text
                if "offload_inbox_waiting_questions 1.0" in inbox_metrics or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            yield Scrapes(
                ingress_metrics, worker_metrics, inbox_metrics, ingress.url, worker.url, inbox.url, startup
            )
    finally:
        worker.service.stop()
        delete_topics_with_prefix(settings)


@pytest.mark.parametrize("service", ["ingress", "worker", "inbox"])
def test_real_scrape_passes_promtool_check_metrics(promtool: str, scrapes: Scrapes, service: str) -> None:
    result = run([promtool, "check", "metrics"], stdin=getattr(scrapes, service))
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_worker_metrics_say_whether_it_is_ready(scrapes: Scrapes) -> None:
    # A scrape taken before GET /ready answered 503 cannot have seen the worker ready (at start-up).
    assert [value for value, status in scrapes.startup if status == 503] != []
    assert all(value == 0 for value, status in scrapes.startup if status == 503), scrapes.startup
    assert readiness(scrapes.worker) == 1


def test_alerts_and_dashboard_use_only_metrics_the_services_serve(scrapes: Scrapes) -> None:
    served = exposed_names(scrapes.ingress) | exposed_names(scrapes.worker) | PROMETHEUS_OWN
    used = {(f"alert {rule['alert']}", name) for rule in alert_rules() for name in metric_names(rule["expr"])}
    used |= {(f"panel {title}", name) for title, expr in dashboard_queries() for name in metric_names(expr)}
    assert {name for _, name in used} >= {"offload_worker_consumer_lag", "offload_ingress_requests_total"}
    assert sorted((where, name) for where, name in used if name not in served) == []


# --- the Kubernetes manifests -------------------------------------------------------------------------------

KUBERNETES = ROOT / "deploy" / "kubernetes"
# The oldest release still common in managed clusters and a current one.
KUBERNETES_VERSIONS = ("1.30.0", "1.35.0")
RUNTIME_UID = 10001  # the Dockerfile's `bridge` user


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(KUBERNETES / "kustomization.yaml")
    return loaded


def manifests() -> list[dict[str, Any]]:
    return [
        document
        for name in kustomization()["resources"]
        for document in yaml.safe_load_all((KUBERNETES / name).read_text())
        if document
    ]


def manifest(kind: str, name: str) -> dict[str, Any]:
    [found] = [m for m in manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def pod_specs() -> dict[str, dict[str, Any]]:
    """The pod template of every workload, by workload name."""
    return {
        m["metadata"]["name"]: m["spec"]["template"]["spec"]
        for m in manifests()
        if m["kind"] in {"Deployment", "StatefulSet", "Job"}
    }


def bridge_image() -> str:
    """The name the manifests give the project's image, which the kustomization sets."""
    [image] = [str(image["name"]) for image in kustomization()["images"] if image["name"] == "offload-bridge"]
    return image


def bridge_container(workload: str) -> dict[str, Any]:
    """The workload's offload-bridge container (the inbox's pod also runs its proxy)."""
    containers: list[dict[str, Any]] = pod_specs()[workload]["containers"]
    [container] = [c for c in containers if c["image"] == bridge_image()]
    return container


def documented_secret(name: str, file: str = "settings.yaml") -> list[str]:
    """The keys of the Secret ``name`` as the `kubectl create secret generic` command of the file's comments
    creates it."""
    comments = "\n".join(
        line.lstrip("# ") for line in (KUBERNETES / file).read_text().splitlines() if line.startswith("#")
    )
    command = re.search(rf"kubectl create secret generic {name} \\\n((?:.*\\\n)*.*)", comments)
    assert command, f"{file} documents no `kubectl create secret generic {name}`"
    return re.findall(r"--from-(?:literal|file)=([A-Za-z0-9_.]+)=", command.group(1))


def user_secrets() -> dict[str, dict[str, str]]:
    """The Secrets the user creates as the documented commands make them: random values."""
    documented = {"offload-bridge-secrets": "settings.yaml", "offload-inbox": "inbox.yaml"}
    return {
        name: {key: secrets.token_hex(24) for key in documented_secret(name, file)}
        for name, file in documented.items()
    }


def container_env(
    container: dict[str, Any], pod: dict[str, str], created: dict[str, dict[str, str]] | None = None
) -> dict[str, str]:
    """The environment Kubernetes gives the container: envFrom, then env in order with $(VAR) expanded from
    what is defined before it; ``pod`` holds the values of the fieldRefs, ``created`` the Secrets the user
    created (default: as documented)."""
    created = user_secrets() if created is None else created
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= manifest("ConfigMap", source["configMapRef"]["name"])["data"]
        else:
            env |= created[source["secretRef"]["name"]]
    for variable in container.get("env", []):
        if "secretKeyRef" in variable.get("valueFrom", {}):
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = created[ref["name"]][ref["key"]]
        elif "valueFrom" in variable:
            env[variable["name"]] = pod[variable["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[variable["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], variable["value"])
    return env


def use_pod_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], mounted: Path) -> None:
    """Set the pod's environment here, the Secret offload-bridge-kafka's mount point replaced by ``mounted``
    (an empty directory: what Kubernetes mounts while the optional Secret does not exist)."""
    mount = manifest("ConfigMap", "offload-bridge-settings")["data"]["OFFLOAD_SECRETS_DIR"]
    for variable, value in env.items():
        monkeypatch.setenv(variable, value.replace(mount, str(mounted)))


def test_kubernetes_manifests_pass_kubernetes_validate_strict() -> None:
    for document in manifests():
        for version in KUBERNETES_VERSIONS:
            # Raises on a field the schema does not know (strict) or a value of the wrong type.
            kubernetes_validate.validate(document, version, strict=True)
    kinds = sorted(m["kind"] for m in manifests())
    # No Secret: the user creates them (settings.yaml, inbox.yaml).
    workloads = ["ConfigMap", "Job", "Deployment", "StatefulSet", "Deployment", "ConfigMap", "Deployment"]
    assert kinds == sorted(
        [*workloads, "Service", "Service", "Service", "Service", "Service", "PodDisruptionBudget",
         "PodDisruptionBudget", "PersistentVolumeClaim"]
    )  # fmt: skip


def test_kustomization_lists_every_manifest_and_sets_the_image_of_every_container() -> None:
    files = sorted(p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization()["resources"]) == files
    [image] = kustomization()["images"]
    for name, spec in pod_specs().items():
        for container in spec["containers"]:
            if container["name"] == "oauth2-proxy":
                # The inbox's sidecar, a release pinned by its tag.
                assert container["image"] == OAUTH2_PROXY_IMAGE, name
            else:
                assert container["image"] == image["name"], name


def test_every_pod_runs_as_the_image_user_without_privileges_on_a_read_only_root() -> None:
    assert f"--uid {RUNTIME_UID}" in (ROOT / "Dockerfile").read_text()
    for name, spec in pod_specs().items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == RUNTIME_UID, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert "memory" in container["resources"]["limits"], name
            if container["image"] == bridge_image():
                # The one writable place besides a worker's data volume (oauth2-proxy writes nothing).
                assert "/tmp" in {mount["mountPath"] for mount in container["volumeMounts"]}, name


def test_services_select_their_pods() -> None:
    labels = {
        m["metadata"]["name"]: m["spec"]["template"]["metadata"]["labels"]
        for m in manifests()
        if m["kind"] in {"Deployment", "StatefulSet"}
    }
    services = {m["metadata"]["name"]: m["spec"] for m in manifests() if m["kind"] == "Service"}
    # The Service names are the Prometheus job names of deploy/prometheus/alerts.yml.
    assert {"offload-ingress", "offload-worker"} <= set(services)
    targets = {"offload-ingress": "offload-ingress", "offload-worker": "offload-worker"}
    targets["offload-worker-api"] = "offload-worker"
    targets["offload-exporter"] = "offload-exporter"
    targets["offload-inbox"] = "offload-inbox"
    for service, workload in targets.items():
        assert services[service]["selector"].items() <= labels[workload].items(), service


KAFKA_WORKLOADS = [
    "offload-ingress", "offload-worker", "offload-bridge-topic-init", "offload-exporter", "offload-inbox"
]  # fmt: skip
OAUTH2_PROXY_IMAGE = "quay.io/oauth2-proxy/oauth2-proxy:v7.15.6"
# The settings that hold secrets: never a value in a manifest or in docker-compose.yml.
SECRET_SETTINGS = {
    name.upper() for name, field in Settings.model_fields.items() if "SecretStr" in str(field.annotation)
}


@pytest.mark.parametrize("workload", KAFKA_WORKLOADS)
def test_kubernetes_settings_are_valid_settings(
    workload: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    container = bridge_container(workload)
    pod = {"metadata.name": f"{workload}-1", "metadata.namespace": "bridge"}
    use_pod_env(monkeypatch, container_env(container, pod), tmp_path)
    Settings()  # a bad value raises, naming the variable


def test_no_secret_value_is_kept_in_the_manifests() -> None:
    assert {"OFFLOAD_WEBHOOK_TOKENS", "OFFLOAD_WORKER_API_TOKENS", "KAFKA_SASL_PASSWORD"} <= SECRET_SETTINGS
    assert [m["metadata"]["name"] for m in manifests() if m["kind"] == "Secret"] == []
    for document in manifests():
        assert SECRET_SETTINGS.isdisjoint(document.get("data", {})), document["metadata"]["name"]
    for name, spec in pod_specs().items():
        for container in spec["containers"]:
            literal = {variable["name"] for variable in container.get("env", []) if "value" in variable}
            assert SECRET_SETTINGS.isdisjoint(literal), name
    # The Secret the ingress and the workers need is required: without it they do not start.
    for workload in ("offload-ingress", "offload-worker"):
        container = bridge_container(workload)
        refs = [source["secretRef"] for source in container["envFrom"] if "secretRef" in source]
        assert refs == [{"name": "offload-bridge-secrets"}], workload
    assert set(documented_secret("offload-bridge-secrets")) == {
        "OFFLOAD_API_KEY",
        "OFFLOAD_WEBHOOK_TOKENS",
        "OFFLOAD_WORKER_API_TOKENS",
    }


@pytest.mark.parametrize("placeholder", ["set-me", "set-me-to-a-long-random-token"])
@pytest.mark.parametrize("variable", ["OFFLOAD_WEBHOOK_TOKENS", "OFFLOAD_WORKER_API_TOKENS"])
def test_a_secret_created_with_placeholders_stops_the_pods(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, placeholder: str
) -> None:
    """The literals this directory once carried: a Secret created from them does not start anything."""
    created = user_secrets()
    created["offload-bridge-secrets"][variable] = placeholder
    for workload in ("offload-ingress", "offload-worker"):
        container = bridge_container(workload)
        pod = {"metadata.name": f"{workload}-0", "metadata.namespace": "bridge"}
        use_pod_env(monkeypatch, container_env(container, pod, created), tmp_path)
        with pytest.raises(SettingsError, match=variable):
            load_settings()


def test_every_kafka_client_mounts_the_optional_kafka_secret_where_settings_are_read() -> None:
    settings = manifest("ConfigMap", "offload-bridge-settings")["data"]
    for workload in KAFKA_WORKLOADS:
        spec = pod_specs()[workload]
        container = bridge_container(workload)
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        assert volumes["kafka-credentials"]["secret"] == {
            "secretName": "offload-bridge-kafka",
            "optional": True,
        }
        [mount] = [mount for mount in container["volumeMounts"] if mount["name"] == "kafka-credentials"]
        assert mount == {
            "name": "kafka-credentials",
            "mountPath": settings["OFFLOAD_SECRETS_DIR"],
            "readOnly": True,
        }, workload
    # Every Kafka security setting is in the ConfigMap, to be set in one place.
    security = {"KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SSL_CAFILE",
                "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE", "KAFKA_SSL_CHECK_HOSTNAME"}  # fmt: skip
    assert security <= set(settings)


@pytest.mark.parametrize("workload", KAFKA_WORKLOADS)
def test_the_documented_kafka_secret_gives_tls_and_sasl_settings(
    workload: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The ConfigMap set as its comments say for SCRAM over TLS with a client certificate, the Secret's files
    where Kubernetes mounts them (here a directory of the test's): the password comes from its file."""
    text = (KUBERNETES / "settings.yaml").read_text()
    mount = manifest("ConfigMap", "offload-bridge-settings")["data"]["OFFLOAD_SECRETS_DIR"]
    password = secrets.token_hex(12)
    for name, content in (
        ("KAFKA_SASL_PASSWORD", password),
        ("ca.crt", "CA"),
        ("user.crt", "C"),
        ("user.key", "K"),
    ):
        assert name in text, f"settings.yaml does not name {name}"
        (tmp_path / name).write_text(content)
    assert f"{mount}/ca.crt" in text and f"{mount}/user.crt" in text and f"{mount}/user.key" in text
    container = bridge_container(workload)
    env = container_env(container, {"metadata.name": f"{workload}-0", "metadata.namespace": "bridge"})
    env |= {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "offload-bridge",
        "KAFKA_SSL_CAFILE": f"{mount}/ca.crt",
        "KAFKA_SSL_CERTFILE": f"{mount}/user.crt",
        "KAFKA_SSL_KEYFILE": f"{mount}/user.key",
    }
    use_pod_env(monkeypatch, env, tmp_path)
    settings = load_settings()
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == password
    assert settings.kafka_ssl_cafile == tmp_path / "ca.crt"


def test_workers_take_id_url_and_data_directory_from_the_statefulset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    workers = manifest("StatefulSet", "offload-worker")
    headless = manifest("Service", workers["spec"]["serviceName"])["spec"]
    # One DNS name per pod, ready or not: a recovering owner answers 503 rather than being unreachable.
    assert headless["clusterIP"] == "None"
    assert headless["publishNotReadyAddresses"] is True
    [container] = workers["spec"]["template"]["spec"]["containers"]
    pod = {"metadata.name": "offload-worker-2", "metadata.namespace": "bridge"}
    use_pod_env(monkeypatch, container_env(container, pod), tmp_path)
    settings = Settings()
    assert settings.worker_instance_id == "offload-worker-2"
    assert settings.worker_url == f"http://offload-worker-2.{workers['spec']['serviceName']}.bridge.svc:6066"
    assert settings.offload_worker_store == "rocksdb://"
    [claim] = workers["spec"]["volumeClaimTemplates"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == str(settings.offload_worker_data_dir)
    # Every standby copy lives on another worker; more workers than partitions would idle.
    replicas = workers["spec"]["replicas"]
    assert 1 <= settings.offload_worker_standby_replicas < replicas <= settings.offload_topic_partitions


def test_the_exporter_writes_to_its_claim_and_serves_metrics_on_its_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    exporter = manifest("Deployment", "offload-exporter")
    pod = exporter["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["args"] == ["export", "--follow"]
    use_pod_env(monkeypatch, container_env(container, {}), tmp_path)
    settings = Settings()
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    claim = volumes["tables"]["persistentVolumeClaim"]["claimName"]
    assert manifest("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert mounts["tables"] == settings.offload_export_to
    # One writer of a ReadWriteOnce claim: the old pod is gone before the new one mounts it.
    assert (exporter["spec"]["replicas"], exporter["spec"]["strategy"]["type"]) == (1, "Recreate")
    assert container["ports"] == [{"name": "metrics", "containerPort": settings.offload_export_metrics_port}]
    assert settings.offload_export_metrics_host == "0.0.0.0"


def test_the_inbox_is_reached_only_through_its_oauth2_proxy_sidecar(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    inbox = bridge_container("offload-inbox")
    [proxy] = [c for c in pod_specs()["offload-inbox"]["containers"] if c["name"] == "oauth2-proxy"]
    # The Service reaches the proxy's port, never the inbox's.
    [port] = manifest("Service", "offload-inbox")["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in proxy["ports"]}
    assert port["targetPort"] not in {p["name"] for p in inbox["ports"]}
    # The proxy forwards to the inbox's port on the pod's loopback, the one address the inbox believes.
    listen = int(inbox["args"][inbox["args"].index("--port") + 1])
    assert inbox["args"][:1] == ["inbox"] and inbox["ports"] == [{"name": "inbox", "containerPort": listen}]
    assert f"--upstream=http://127.0.0.1:{listen}" in proxy["args"]
    use_pod_env(monkeypatch, container_env(inbox, {}), tmp_path)
    settings = load_settings()
    assert parse_networks(settings.offload_inbox_trusted_proxies) == (ipaddress.ip_network("127.0.0.1/32"),)
    assert settings.offload_inbox_csrf_secret is not None
    # A case's context comes from the workers' API Service, with the workers' token.
    [worker_url] = settings.worker_urls
    api = manifest("Service", "offload-worker-api")["spec"]
    assert worker_url == f"http://offload-worker-api:{api['ports'][0]['port']}"
    assert settings.worker_client_token is not None

    # Each container reads only its own keys of the Secrets, by name; the proxy's settings hold no secret.
    def secret_keys(container: dict[str, Any]) -> set[tuple[str, str]]:
        refs = [
            v["valueFrom"]["secretKeyRef"]
            for v in container["env"]
            if "secretKeyRef" in v.get("valueFrom", {})
        ]
        return {(ref["name"], ref["key"]) for ref in refs}

    assert secret_keys(inbox) == {
        ("offload-inbox", "OFFLOAD_INBOX_CSRF_SECRET"),
        ("offload-bridge-secrets", "OFFLOAD_WORKER_API_TOKENS"),
    }
    proxy_secrets = {
        ("offload-inbox", "OAUTH2_PROXY_CLIENT_SECRET"),
        ("offload-inbox", "OAUTH2_PROXY_COOKIE_SECRET"),
    }
    assert secret_keys(proxy) == proxy_secrets
    assert all("secretRef" not in source for c in (inbox, proxy) for source in c["envFrom"])
    assert set(documented_secret("offload-inbox", "inbox.yaml")) == {
        key for _, key in secret_keys(inbox) | proxy_secrets if key != "OFFLOAD_WORKER_API_TOKENS"
    }
    [source] = proxy["envFrom"]
    oidc = manifest("ConfigMap", source["configMapRef"]["name"])["data"]
    assert {key for _, key in proxy_secrets}.isdisjoint(oidc)
    assert {"OAUTH2_PROXY_OIDC_ISSUER_URL", "OAUTH2_PROXY_CLIENT_ID", "OAUTH2_PROXY_REDIRECT_URL",
            "OAUTH2_PROXY_EMAIL_DOMAINS"} <= set(oidc)  # fmt: skip
    # Both containers are probed; the inbox on its own readiness and liveness routes (answered by the real
    # process in test_kubernetes_probes_answer_on_the_real_processes), the proxy on oauth2-proxy's.
    assert (inbox["readinessProbe"]["httpGet"]["path"], inbox["livenessProbe"]["httpGet"]["path"]) == (
        "/ready",
        "/healthz",
    )
    assert (proxy["readinessProbe"]["httpGet"]["path"], proxy["livenessProbe"]["httpGet"]["path"]) == (
        "/ready",
        "/ping",
    )
    assert {proxy["readinessProbe"]["httpGet"]["port"], proxy["livenessProbe"]["httpGet"]["port"]} == {
        "proxy"
    }


def test_a_placeholder_csrf_secret_stops_the_inbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    created = user_secrets()
    created["offload-inbox"]["OFFLOAD_INBOX_CSRF_SECRET"] = "set-me-to-a-long-random-secret"
    use_pod_env(monkeypatch, container_env(bridge_container("offload-inbox"), {}, created), tmp_path)
    with pytest.raises(SettingsError, match="OFFLOAD_INBOX_CSRF_SECRET"):
        load_settings()


# --- docker-compose.yml: secure by default, pointed at any cluster -----------------------------------------

COMPOSE_KAFKA_SERVICES = ("topic-init", "ingress", "worker", "exporter", "inbox")
# Secrets of services under a profile: compose reads every service's variables before it applies the
# profiles, so a `${VAR:?}` there would stop the default stack. They have no default instead.
PROFILE_SECRETS = {("inbox", "OFFLOAD_INBOX_CSRF_SECRET")}
STRONG_TOKENS = {
    "OFFLOAD_WEBHOOK_TOKENS": secrets.token_hex(24),
    "OFFLOAD_WORKER_API_TOKENS": secrets.token_hex(24),
}


class Unset(Exception):
    """A `${VAR:?message}` of docker-compose.yml met an unset variable: compose refuses to start."""


def interpolate(value: str, env: dict[str, str]) -> str:
    """docker compose's `${VAR}`, `${VAR:-default}` and `${VAR:?message}` against ``env``."""

    def one(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        value = env.get(name, "")
        if operator == ":?" and not value:
            raise Unset(f"{name}: {argument}")
        return value or (argument if operator == ":-" else "")

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def compose_service(name: str, env: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The environment and the volumes of a service of docker-compose.yml, as compose resolves them."""
    service = load_yaml(ROOT / "docker-compose.yml")["services"][name]
    environment = {key: interpolate(str(value), env) for key, value in service.get("environment", {}).items()}
    return environment, [interpolate(volume, env) for volume in service.get("volumes", [])]


def compose_settings(
    name: str, env: dict[str, str], credentials: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The settings a service's process reads, its credentials mount backed by ``credentials``."""
    environment, volumes = compose_service(name, env)
    [mount] = [volume for volume in volumes if volume.endswith(":ro") and "kafka" in volume]
    _, inside, _ = mount.split(":")
    assert environment["OFFLOAD_SECRETS_DIR"] == inside, name
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value.replace(inside, str(credentials)))
    return load_settings()


def test_compose_does_not_start_without_real_tokens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for missing in STRONG_TOKENS:
        present = {name: value for name, value in STRONG_TOKENS.items() if name != missing}
        with pytest.raises(Unset, match=missing):
            for service in COMPOSE_KAFKA_SERVICES:
                compose_service(service, present)
    # Set, but to what a template says: the settings refuse it.
    with pytest.raises(SettingsError, match="OFFLOAD_WEBHOOK_TOKENS"):
        compose_settings(
            "ingress", {**STRONG_TOKENS, "OFFLOAD_WEBHOOK_TOKENS": "set-me"}, tmp_path, monkeypatch
        )


def test_compose_keeps_secret_settings_out_of_the_file() -> None:
    compose = load_yaml(ROOT / "docker-compose.yml")
    for name, service in compose["services"].items():
        for variable, value in service.get("environment", {}).items():
            if variable not in SECRET_SETTINGS:
                continue
            if variable == "OFFLOAD_API_KEY":
                # The simulator's published key (SIMULATOR_API_KEYS), for `--profile demo`; Offload's own
                # comes from the environment.
                assert value == "${OFFLOAD_API_KEY:-dev-key}", name
                continue
            if (name, variable) in PROFILE_SECRETS:
                assert value == f"${{{variable}:-}}", (name, variable, value)
                continue
            assert re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", str(value)), (name, variable, value)
    assert "KAFKA_SASL_PASSWORD" not in (ROOT / "docker-compose.yml").read_text().split("services:")[1]


def test_compose_uses_its_own_broker_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for service in COMPOSE_KAFKA_SERVICES:
        settings = compose_settings(service, STRONG_TOKENS, tmp_path, monkeypatch)
        assert (settings.bootstrap_servers, settings.kafka_security_protocol) == ("kafka:19092", "PLAINTEXT")
    # The default credentials directory is in the repository, and git keeps what is put there out of it.
    _, volumes = compose_service("worker", STRONG_TOKENS)
    source = Path(volumes[0].split(":")[0])
    assert (ROOT / source).is_dir()
    assert (ROOT / source / ".gitignore").read_text().splitlines()[1:] == ["*", "!.gitignore"]
    assert compose_service("simulator", STRONG_TOKENS)[1] == [], "the simulator never gets Kafka credentials"


@pytest.mark.parametrize("service", COMPOSE_KAFKA_SERVICES)
def test_compose_points_every_service_at_your_cluster_with_files_for_secrets(
    service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    credentials = tmp_path / "kafka-credentials"
    credentials.mkdir()
    password = secrets.token_hex(12)
    (credentials / "KAFKA_SASL_PASSWORD").write_text(password + "\n")
    (credentials / "ca.crt").write_text("the cluster's CA")
    env = {
        **STRONG_TOKENS,
        "KAFKA_BOOTSTRAP_SERVERS": "b-1.kafka.example.com:9096,b-2.kafka.example.com:9096",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "offload-bridge",
        "KAFKA_SSL_CAFILE": "/etc/offload-bridge/kafka/ca.crt",
        "KAFKA_CREDENTIALS_DIR": str(credentials),
    }
    _, volumes = compose_service(service, env)
    assert f"{credentials}:/etc/offload-bridge/kafka:ro" in volumes
    settings = compose_settings(service, env, credentials, monkeypatch)
    assert settings.bootstrap_servers == env["KAFKA_BOOTSTRAP_SERVERS"]
    assert (settings.kafka_security_protocol, settings.kafka_sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert settings.kafka_sasl_username == "offload-bridge"
    assert (
        settings.kafka_sasl_password is not None
        and settings.kafka_sasl_password.get_secret_value() == password
    )
    assert settings.kafka_ssl_cafile == credentials / "ca.crt"


def test_compose_exporter_is_an_analytics_profile_service_writing_to_its_volume() -> None:
    compose = load_yaml(ROOT / "docker-compose.yml")
    exporter = compose["services"]["exporter"]
    assert exporter["profiles"] == ["analytics"]  # the default stack stays as it was
    assert exporter["command"] == ["export", "--follow"]
    [volume] = [volume for volume in exporter["volumes"] if volume.startswith("analytics-tables:")]
    name, mount = volume.split(":")
    assert name in compose["volumes"] and mount == exporter["environment"]["OFFLOAD_EXPORT_TO"]
    # The image makes the mount point, owned by its user, so the named volume is writable.
    assert "/home/bridge/tables" in (ROOT / "Dockerfile").read_text() and mount == "/home/bridge/tables"
    assert exporter["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"


def test_compose_default_stack_needs_no_variable_of_a_profile() -> None:
    """Compose reads every service's variables whatever the profiles: with only the two tokens set, none of
    them stops the default stack."""
    for name in load_yaml(ROOT / "docker-compose.yml")["services"]:
        compose_service(name, STRONG_TOKENS)  # raises Unset on a `${VAR:?}`


def test_compose_inbox_profile_puts_the_inbox_behind_oauth2_proxy_at_a_fixed_address() -> None:
    compose = load_yaml(ROOT / "docker-compose.yml")
    inbox, proxy = compose["services"]["inbox"], compose["services"]["oauth2-proxy"]
    assert inbox["profiles"] == proxy["profiles"] == ["inbox"]
    assert "ports" not in inbox, "people reach the inbox through the proxy only"
    assert interpolate(proxy["image"], {}) == OAUTH2_PROXY_IMAGE
    listen = int(inbox["command"][inbox["command"].index("--port") + 1])
    assert f"--upstream=http://inbox:{listen}" in proxy["command"]
    # The inbox believes the proxy's address on their network, and no other.
    environment, _ = compose_service("inbox", STRONG_TOKENS)
    trusted = parse_networks(environment["OFFLOAD_INBOX_TRUSTED_PROXIES"])
    address = ipaddress.ip_address(proxy["networks"]["inbox-proxy"]["ipv4_address"])
    assert trusted == (ipaddress.ip_network(f"{address}/32"),)
    [subnet] = [
        ipaddress.ip_network(c["subnet"]) for c in compose["networks"]["inbox-proxy"]["ipam"]["config"]
    ]
    inbox_address = ipaddress.ip_address(inbox["networks"]["inbox-proxy"]["ipv4_address"])
    assert address in subnet and inbox_address in subnet and address != inbox_address
    assert set(proxy["networks"]) == {"inbox-proxy"}, "only the proxy and the inbox share that network"
    # The proxy's secrets and its OpenID Connect client come from the environment, with no default.
    secrets_and_client = ("CLIENT_SECRET", "COOKIE_SECRET", "CLIENT_ID", "OIDC_ISSUER_URL", "EMAIL_DOMAINS")
    for name in secrets_and_client:
        assert re.fullmatch(r"\$\{INBOX_\w+:-\}", proxy["environment"][f"OAUTH2_PROXY_{name}"]), name
    assert proxy["depends_on"]["inbox"]["condition"] == "service_healthy"
    assert inbox["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"


def test_exporter_metrics_pass_promtool_check_metrics(
    promtool: str, kafka_broker: str, tmp_path: Path
) -> None:
    """A real ``export --follow`` serves metrics Prometheus accepts, the ones the docs name."""
    settings = Settings(kafka_bootstrap_servers=kafka_broker, offload_topic_prefix=unique_prefix())
    ensure_topics(settings)
    port = free_port()
    env = {**settings_env(settings), "OFFLOAD_EXPORT_METRICS_PORT": str(port), "OFFLOAD_EXPORT_ROLL_S": "1"}
    service = ServiceProcess(["export", "--to", str(tmp_path / "tables"), "--follow"], env=env,
                             log_path=tmp_path / "export.log")  # fmt: skip
    try:
        with running(service):
            service.wait_http(f"http://127.0.0.1:{port}/metrics")
            publish_webhook(settings, SEED_INPUT_NEEDED)
            deadline = time.monotonic() + 60
            while True:
                exposition = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                if 'offload_export_rows_written_total{table="events"} 1.0' in exposition:
                    break
                assert time.monotonic() < deadline, exposition + service.log_tail()
                time.sleep(0.5)
    finally:
        delete_topics_with_prefix(settings)
    result = run([promtool, "check", "metrics"], stdin=exposition)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    for name in (
        "offload_export_rows_written_total",
        "offload_export_files_written_total",
        "offload_export_skipped_total",
        "offload_export_consumer_lag",
        "offload_export_last_file_time_seconds",
        "offload_export_last_snapshot_time_seconds",
    ):
        assert name in exposed_names(exposition), name  # fmt: skip


def test_kubernetes_probes_answer_on_the_real_processes(scrapes: Scrapes) -> None:
    urls = {
        "offload-ingress": scrapes.ingress_url,
        "offload-worker": scrapes.worker_url,
        "offload-inbox": scrapes.inbox_url,
    }
    for workload, url in urls.items():
        container = bridge_container(workload)
        probes = [
            container[key] for key in ("readinessProbe", "livenessProbe", "startupProbe") if key in container
        ]
        assert len(probes) >= 2, workload
        for probe in probes:
            assert probe["httpGet"]["port"] == container["ports"][0]["name"], workload
            answer = httpx.get(url + probe["httpGet"]["path"], timeout=10)
            assert answer.status_code == 200, (workload, probe["httpGet"]["path"], answer.text)
