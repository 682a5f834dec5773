"""`make container-test`: the Dockerfile and docker-compose.yml, run for real with podman on a machine that
reaches no image registry.

The images come from Debian's packages and Maven's jars only: a Debian base (mmdebstrap, then `podman
import`) with Python for the project's image, the same base with a Java runtime for a broker image built from
the jars `offload-bridge kafka fetch` took (deploy/broker/). The bases are kept between runs, each tagged with
a hash of what went into it; the project's image is rebuilt on top of podman's layer cache. Then the compose
stack runs under its own project name on free ports, a seed webhook goes to the ingress, the worker's
`GET /cases/{id}` shows the case, and shows the same after the worker container restarts and after
`down`/`up` (the worker's RocksDB volume and the broker's data volume kept). Last, the `inbox` profile's inbox
(not its oauth2-proxy, whose image comes from a registry) reads the seed question from the topics and refuses
a request that does not come from the proxy's address. The stack and its volumes are removed at the end,
whether the run passed or not. Every step has a deadline and says how long it took.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml
from kafka import KafkaConsumer, TopicPartition

from offload_bridge.schemas.case_state import CaseState

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PROJECT = "offload-bridge-ctest"
# The host's suite (Debian 12): its python3.11 is the Python the image needs.
SUITE = "bookworm"
MIRRORS = (
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main",
)
# Where the base's Python lives: a virtualenv, so `pip install` works as in the official image (Debian's own
# Python refuses it, PEP 668), with `python` and `pip` on PATH.
VENV = "/opt/python"
PYTHON_PACKAGES = ("python3.11", "python3.11-venv", "passwd", "ca-certificates")
JRE_PACKAGES = (*PYTHON_PACKAGES, "openjdk-17-jre-headless")
KAFKA_LIBS = ROOT / ".kafka" / "libs"
BRIDGE_IMAGE = "localhost/offload-bridge:container-test"
# This machine reaches PyPI through a proxy that only its own CA bundle trusts; the build's pip reads it
# through this mount (Debian's pip uses the system bundle), so the image itself carries none of it.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
SEED_WEBHOOK = ROOT / "tests" / "data" / "webhook_input_needed.json"
# The default OFFLOAD_TOPIC_PREFIX, as docker-compose.yml leaves it.
CASE_EVENTS = "offload.case-events"


class StepFailed(RuntimeError):
    pass


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise StepFailed(f"{what}: not within the step's {self.seconds:.0f} s")


@contextlib.contextmanager
def step(title: str, seconds: float) -> Iterator[Deadline]:
    print(f"==> {title} (deadline {seconds:.0f} s)", flush=True)
    started = time.monotonic()
    yield Deadline(seconds)
    print(f"    done in {time.monotonic() - started:.1f} s", flush=True)


def env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(DEPLOY / "containers.conf")}


def run(command: Sequence[str], deadline: Deadline, *, check: bool = True, quiet: bool = False) -> str:
    """Runs a command within what is left of the step's deadline; its output, or StepFailed with its tail."""
    if not quiet:
        print("    $ " + " ".join(command), flush=True)
    try:
        done = subprocess.run(
            list(command), env=env(), capture_output=True, text=True, timeout=max(deadline.left(), 1)
        )
    except subprocess.TimeoutExpired as error:
        raise StepFailed(
            f"{command[0]} {command[1]}: not within the step's {deadline.seconds:.0f} s"
        ) from error
    if check and done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise StepFailed(f"{' '.join(command[:3])} exited with {done.returncode}:\n{tail}")
    return done.stdout


def compose_command() -> list[str]:
    return [
        str(Path(sys.executable).parent / "podman-compose"),
        "-p",
        PROJECT,
        "-f",
        str(ROOT / "docker-compose.yml"),
    ]


def image_exists(tag: str) -> bool:
    return subprocess.run(["podman", "image", "exists", tag], env=env(), check=False).returncode == 0


def digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def file_digest(*paths: Path) -> list[tuple[str, str]]:
    files = sorted(path for root in paths for path in ([root] if root.is_file() else root.rglob("*")))
    return [(file.name, hashlib.sha256(file.read_bytes()).hexdigest()) for file in files if file.is_file()]


# --- images ---------------------------------------------------------------------------------------------
def base_image(name: str, packages: Sequence[str]) -> str:
    """A Debian base built from Debian's packages, reused while the recipe is the same."""
    options = (
        "--variant=minbase",
        "--include=" + ",".join(sorted(packages)),
        # Documentation and translations are of no use in a container.
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        # The JRE's post-install links its manual page there, even with the manuals left out.
        '--setup-hook=mkdir -p "$1/usr/share/man/man1"',
        f'--customize-hook=chroot "$1" python3.11 -m venv {VENV}',
    )
    changes = (
        f"ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        'CMD ["python3"]',
    )
    # Everything that goes into the image names it: a changed recipe builds a new base.
    tag = f"localhost/offload-bridge-base-{name}:{SUITE}-{digest(options, SUITE, MIRRORS, changes)}"
    with step(f"base image {tag}", 900) as deadline:
        if image_exists(tag):
            print("    cached", flush=True)
            return tag
        with tempfile.TemporaryDirectory(prefix="offload-bridge-base-") as scratch:
            tarball = Path(scratch) / "rootfs.tar"
            run(["mmdebstrap", *options, SUITE, str(tarball), *MIRRORS], deadline)
            run(
                ["podman", "import", *(f"--change={change}" for change in changes), str(tarball), tag],
                deadline,
            )
        drop_other_tags(tag, deadline)
    return tag


def drop_other_tags(tag: str, deadline: Deadline) -> None:
    """Older recipes of the same image are of no further use."""
    listing = ["podman", "images", "--format", "{{.Repository}}:{{.Tag}}", tag.rpartition(":")[0]]
    for other in run(listing, deadline, quiet=True).split():
        if other != tag:
            run(["podman", "rmi", other], deadline, check=False)


def broker_image(base: str) -> str:
    """deploy/broker's broker image on the Java base, with the jars of `offload-bridge kafka fetch`."""
    if not KAFKA_LIBS.is_dir():
        raise StepFailed(f"{KAFKA_LIBS} is missing: run `offload-bridge kafka fetch` first")
    recipe = digest(base, file_digest(DEPLOY / "broker"), sorted(path.name for path in KAFKA_LIBS.iterdir()))
    tag = f"localhost/offload-bridge-kafka:{recipe}"
    with step(f"broker image {tag}", 600) as deadline:
        if image_exists(tag):
            print("    cached", flush=True)
            return tag
        with tempfile.TemporaryDirectory(prefix="offload-bridge-kafka-") as context:
            shutil.copytree(DEPLOY / "broker", context, dirs_exist_ok=True)
            shutil.copytree(KAFKA_LIBS, Path(context) / "libs", ignore=shutil.ignore_patterns(".*"))
            run(["podman", "build", "--build-arg", f"BASE_IMAGE={base}", "-t", tag, context], deadline)
        drop_other_tags(tag, deadline)
    return tag


def bridge_image(base: str) -> str:
    """The project's Dockerfile on the Debian base; podman's layer cache makes an unchanged tree quick."""
    with step(f"project image {BRIDGE_IMAGE}", 1200) as deadline:
        mounts = ["-v", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"] if HOST_CA_BUNDLE.is_file() else []
        run(
            ["podman", "build", "--build-arg", f"BASE_IMAGE={base}", *mounts, "-t", BRIDGE_IMAGE, str(ROOT)],
            deadline,
        )
    return BRIDGE_IMAGE


# --- the stack ----------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Stack:
    def __init__(self, kafka_image: str, bridge_image: str, base: str) -> None:
        self.token = secrets.token_urlsafe(16)
        self.worker_token = secrets.token_urlsafe(24)
        self.ports = {name: free_port() for name in ("KAFKA", "INGRESS", "WORKER", "SIMULATOR")}
        self.variables = {
            "KAFKA_IMAGE": kafka_image,
            "BRIDGE_IMAGE": bridge_image,
            "BASE_IMAGE": base,
            "OFFLOAD_WEBHOOK_TOKENS": self.token,
            "OFFLOAD_WORKER_API_TOKENS": self.worker_token,
            **{f"{name}_HOST_PORT": str(port) for name, port in self.ports.items()},
        }

    def compose(self, *args: str, deadline: Deadline, check: bool = True) -> str:
        command = [*compose_command(), *args]
        print("    $ podman-compose " + " ".join(args), flush=True)
        os.environ.update(self.variables)
        return run(command, deadline, check=check, quiet=True)

    def container(self, service: str) -> str:
        return f"{PROJECT}_{service}_1"

    def wait_healthy(self, service: str, deadline: Deadline) -> None:
        """Runs the service's own health check until it passes: podman runs health checks on a systemd
        timer, and without systemd nobody else does."""
        name = self.container(service)
        while True:
            try:
                healthy = subprocess.run(
                    ["podman", "healthcheck", "run", name],
                    env=env(), capture_output=True, check=False, timeout=max(deadline.left(), 1),
                ).returncode == 0  # fmt: skip
            except subprocess.TimeoutExpired:
                healthy = False
            if healthy:
                print(f"    {service} healthy", flush=True)
                return
            state = run(["podman", "inspect", "--format", "{{.State.Status}}", name], deadline, quiet=True)
            if state.strip() not in ("running", "created", "configured"):
                raise StepFailed(f"{service} is {state.strip()}, not running")
            deadline.check(f"{service} healthy")
            time.sleep(2)

    def wait_exited_ok(self, service: str, deadline: Deadline) -> None:
        name = self.container(service)
        while True:
            state = run(
                ["podman", "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name],
                deadline,
                quiet=True,
            ).split()
            if state[0] in ("exited", "stopped"):
                if state[1] != "0":
                    raise StepFailed(f"{service} exited with {state[1]}")
                print(f"    {service} exited with 0", flush=True)
                return
            deadline.check(f"{service} to finish")
            time.sleep(1)

    def start(self, deadline: Deadline) -> None:
        # One service after the other, in the order the depends_on conditions give, each waited for here:
        # podman-compose ignores `service_healthy` before podman 4.6, and podman 4.3 cannot start a container
        # whose dependency has a dependency of its own ("not found in input list"), hence --no-deps.
        self.compose("up", "-d", "--no-build", "kafka", deadline=deadline)
        self.wait_healthy("kafka", deadline)
        self.compose("up", "-d", "--no-build", "--no-deps", "topic-init", deadline=deadline)
        self.wait_exited_ok("topic-init", deadline)
        self.compose("up", "-d", "--no-build", "--no-deps", "ingress", "worker", deadline=deadline)
        self.wait_healthy("ingress", deadline)
        self.wait_healthy("worker", deadline)

    def volume_path(self, volume: str, deadline: Deadline) -> Path:
        name = f"{PROJECT}_{volume}"
        return Path(
            run(["podman", "volume", "inspect", "--format", "{{.Mountpoint}}", name], deadline).strip()
        )

    def show_logs(self) -> None:
        for service in ("kafka", "topic-init", "ingress", "worker", "inbox"):
            shown = subprocess.run(
                ["podman", "logs", "--tail", "30", self.container(service)],
                env=env(), capture_output=True, text=True, check=False, timeout=30,
            )  # fmt: skip
            print(f"--- {service} (last lines) ---\n{(shown.stdout + shown.stderr).strip()}", flush=True)

    def down(self) -> None:
        with step("tear down the stack and its volumes", 180) as deadline:
            # The profile, so that the inbox goes too.
            self.compose("--profile", "inbox", "down", "-v", "-t", "10", deadline=deadline, check=False)
            for volume in ("kafka-data", "worker-data"):
                run(
                    ["podman", "volume", "rm", "-f", f"{PROJECT}_{volume}"], deadline, check=False, quiet=True
                )


def check_image_mount_point(image: str, deadline: Deadline) -> None:
    """The image has the worker-data mount point, owned by the user it runs as. Docker starts an empty named
    volume as a copy of it, owner included, and makes a missing one root's; podman gives a fresh volume to the
    container's user either way, so the stack alone would not show the difference."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(volume.split(":", 1) for volume in compose["services"]["worker"]["volumes"])
    path = mounts["worker-data"]
    shown = run(
        ["podman", "run", "--rm", "--entrypoint", "stat", image, "-c", "%u %F", path], deadline, check=False
    )
    print(f"    {path} in the image: {shown.strip() or 'missing'}", flush=True)
    if shown.split() != ["10001", "directory"]:
        raise StepFailed(f"the image has no directory {path} owned by its user 10001")


def read_case(base_url: str, case_id: str, deadline: Deadline, token: str) -> dict[str, Any]:
    """The worker's answer for the case, once it has one (404 until the event is folded); the worker's
    query API takes its bearer token."""
    while True:
        try:
            answer = httpx.get(
                f"{base_url}/cases/{case_id}", timeout=10, headers={"authorization": f"Bearer {token}"}
            )
            if answer.status_code == 200:
                body: dict[str, Any] = answer.json()
                return body
            if answer.status_code != 404:
                raise StepFailed(f"GET /cases/{case_id} answered {answer.status_code}: {answer.text[:300]}")
        except httpx.TransportError:
            pass
        deadline.check(f"GET /cases/{case_id}")
        time.sleep(1)


def check_rocksdb_volume(stack: Stack, deadline: Deadline) -> None:
    data = stack.volume_path("worker-data", deadline)
    owner = data.stat().st_uid
    if owner != 10001:
        raise StepFailed(f"the worker-data volume is owned by uid {owner}, not the image's user 10001")
    databases = sorted(str(path.parent.relative_to(data)) for path in data.rglob("CURRENT"))
    if not databases:
        raise StepFailed("the worker-data volume holds no RocksDB database")
    print(
        f"    worker-data (uid {owner}): {len(databases)} RocksDB databases, e.g. {databases[0]}", flush=True
    )


def check_kafka_volume(stack: Stack, deadline: Deadline) -> None:
    data = stack.volume_path("kafka-data", deadline)
    if not (data / "meta.properties").is_file():
        raise StepFailed(
            "the kafka-data volume holds no meta.properties: the broker keeps its data elsewhere"
        )
    topics = [path.name for path in data.iterdir() if path.name.startswith(f"{CASE_EVENTS}-")]
    if not topics:
        raise StepFailed(f"the kafka-data volume holds no partition of {CASE_EVENTS}")
    print(f"    kafka-data: meta.properties, {len(topics)} partitions of {CASE_EVENTS}", flush=True)


def case_events_end(stack: Stack, partition: int, deadline: Deadline) -> int:
    """The end offset of a case-events partition, asked of the broker through its published port."""
    consumer = KafkaConsumer(
        bootstrap_servers=f"127.0.0.1:{stack.ports['KAFKA']}",
        request_timeout_ms=int(min(deadline.left(), 30) * 1000),
    )
    try:
        end: int = consumer.end_offsets([TopicPartition(CASE_EVENTS, partition)])[
            TopicPartition(CASE_EVENTS, partition)
        ]
    finally:
        consumer.close()
    print(f"    {CASE_EVENTS}[{partition}] ends at offset {end}", flush=True)
    return end


def check_case(body: dict[str, Any], seed: dict[str, Any]) -> None:
    """The worker's view of the case is the seed webhook's: status and the pending question."""
    state = CaseState.model_validate(body["data"])
    question = state.inputRequest.id if state.inputRequest else None
    print(f"    status {state.status}, pending question {question}, {state.eventCount} event(s)", flush=True)
    if (state.status, question) != (seed["data"]["status"], seed["data"]["inputRequestId"]):
        raise StepFailed(f"the worker shows {state}, not what the seed webhook said")


# Run in the inbox's container: what its health check and a request from its own loopback get.
INBOX_PROBE = """
import json, urllib.error, urllib.request
def get(path, headers={}):
    request = urllib.request.Request("http://127.0.0.1:8095" + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
lines = get("/metrics")[1].splitlines()
waiting = [line.split()[1] for line in lines if line.startswith("offload_inbox_waiting_questions ")]
print(json.dumps({"waiting": float(waiting[0]), "list": get("/", {"X-Forwarded-Email": "a@example.com"})}))
"""


def check_inbox(stack: Stack, deadline: Deadline) -> None:
    """The inbox counts the seed question, and refuses a person who does not come through its proxy: in
    docker-compose.yml it believes only the proxy's fixed address, not even its own loopback."""
    while True:
        shown = run(
            ["podman", "exec", stack.container("inbox"), "python", "-c", INBOX_PROBE], deadline, quiet=True
        )
        answer = json.loads(shown)
        if answer["waiting"] == 1:
            break
        deadline.check("the inbox to count the seed question")
        time.sleep(1)
    status, body = answer["list"]
    print(f"    1 waiting question; GET / from the container's loopback: {status} {body[:120]}", flush=True)
    if status != 401 or "UNAUTHORIZED" not in body:
        raise StepFailed(f"the inbox answered {status} to a request that did not come from its proxy")


def main() -> int:
    started = time.monotonic()
    # A stopped run (CI's time running out, Ctrl-C) still tears the stack down: SIGTERM unwinds like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with step("podman runs containers here", 120) as deadline:
        for tool in ("podman", "runc", "mmdebstrap"):
            if shutil.which(tool) is None:
                raise StepFailed(f"{tool} is not installed (Debian: apt-get install podman runc mmdebstrap)")
        run(["podman", "--version"], deadline)
    python_base = base_image("python", PYTHON_PACKAGES)
    jre_base = base_image("jre", JRE_PACKAGES)
    kafka = broker_image(jre_base)
    bridge = bridge_image(python_base)
    with step("the image makes the worker's data directory", 60) as deadline:
        check_image_mount_point(bridge, deadline)
    stack = Stack(kafka, bridge, python_base)
    print(f"    ports on the host: {stack.ports}", flush=True)
    seed = json.loads(SEED_WEBHOOK.read_text())
    case_id = seed["data"]["caseId"]
    worker_url = f"http://127.0.0.1:{stack.ports['WORKER']}"
    passed = False
    try:
        with step("remove what an earlier run may have left", 180) as deadline:
            stack.compose("down", "-v", "-t", "5", deadline=deadline, check=False)
        with step("start the stack: broker, topics, ingress, worker", 300) as deadline:
            stack.start(deadline)
        with step("post the seed webhook to the ingress", 60) as deadline:
            url = f"http://127.0.0.1:{stack.ports['INGRESS']}/webhooks/offload/{stack.token}"
            answer = httpx.post(
                url,
                content=SEED_WEBHOOK.read_bytes(),
                headers={"content-type": "application/json"},
                timeout=deadline.left(),
            )
            print(f"    {answer.status_code} {answer.text[:200]}", flush=True)
            if answer.status_code != 200 or not answer.json().get("ok"):
                raise StepFailed(f"the ingress answered {answer.status_code}")
            partition = int(answer.json()["data"]["partition"])
        with step(f"read case {case_id} from the worker", 120) as deadline:
            first = read_case(worker_url, case_id, deadline, stack.worker_token)
            check_case(first, seed)
        with step("the worker's tables and the broker's log are in their volumes", 60) as deadline:
            check_rocksdb_volume(stack, deadline)
            check_kafka_volume(stack, deadline)
            events = case_events_end(stack, partition, deadline)
        with step("restart the worker container and read the case again", 240) as deadline:
            stack.compose("restart", "worker", deadline=deadline)
            stack.wait_healthy("worker", deadline)
            again = read_case(worker_url, case_id, deadline, stack.worker_token)
            if again != first:
                raise StepFailed(f"after the restart the worker answers {again}, before it answered {first}")
            print("    same answer", flush=True)
        with step("down, then up with the same volumes, and read the case again", 420) as deadline:
            stack.compose("down", "-t", "10", deadline=deadline)
            stack.start(deadline)
            if case_events_end(stack, partition, deadline) < events:
                raise StepFailed(f"{CASE_EVENTS} lost its records: the broker's data did not survive down/up")
            again = read_case(worker_url, case_id, deadline, stack.worker_token)
            if again != first:
                raise StepFailed(f"after down/up the worker answers {again}, before it answered {first}")
            print("    same answer", flush=True)
        with step(
            "the inbox reads the question from the topics (profile inbox, without its proxy)", 240
        ) as deadline:
            stack.compose(
                "--profile", "inbox", "up", "-d", "--no-build", "--no-deps", "inbox", deadline=deadline
            )
            stack.wait_healthy("inbox", deadline)
            check_inbox(stack, deadline)
        passed = True
    except StepFailed as failure:
        print(f"FAILED: {failure}", flush=True)
        stack.show_logs()
    finally:
        stack.down()
    print(
        f"container test {'passed' if passed else 'FAILED'} in {time.monotonic() - started:.0f} s", flush=True
    )
    return 0 if passed else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StepFailed as failure:
        print(f"FAILED: {failure}", flush=True)
        sys.exit(1)
