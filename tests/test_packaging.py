"""docker-compose.yml and the Dockerfile name things that exist: the broker version, our CLI commands; the
image installs the server stack, and the client for teams installs light."""

from __future__ import annotations

import ast
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest
import yaml

from offload_bridge.cli import build_parser
from offload_bridge.docs_examples import Example, examples
from offload_bridge.kafka.local_broker import KAFKA_VERSION
from offload_bridge.schemas.case_requests import CaseRequestOutcome, CaseRequestOutcomeKind
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import case_body
from offload_bridge.testing import free_port, produce, settings_env
from offload_bridge.topics import CASE_REQUEST_OUTCOMES

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_kafka_image_matches_the_local_broker_version(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    # KAFKA_IMAGE swaps in another image (deploy/broker's, where apache/kafka cannot be pulled).
    assert kafka["image"] == f"${{KAFKA_IMAGE:-apache/kafka:{KAFKA_VERSION}}}"
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", "single-node KRaft"
    assert "healthcheck" in kafka


def test_the_broker_keeps_its_log_in_the_kafka_data_volume(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    mounts = dict(volume.split(":", 1) for volume in kafka["volumes"])
    # apache/kafka writes under /tmp unless told otherwise, and `down` then `up` would start an empty broker.
    assert kafka["environment"]["KAFKA_LOG_DIRS"] == mounts["kafka-data"]
    broker_dockerfile = (ROOT / "deploy" / "broker" / "Dockerfile").read_text()
    assert f'VOLUME ["{mounts["kafka-data"]}"]' in broker_dockerfile


def test_published_ports_can_move_off_the_defaults(compose: dict[str, Any]) -> None:
    # A second stack, or a broker already on 9092, must not stop the stack from starting.
    expected = {
        "kafka": "${KAFKA_HOST_PORT:-9092}:9092",
        "ingress": "${INGRESS_HOST_PORT:-8080}:8080",
        # The worker's query API only on the host's loopback.
        "worker": "127.0.0.1:${WORKER_HOST_PORT:-6066}:6066",
        "simulator": "${SIMULATOR_HOST_PORT:-8900}:8900",
        # The inbox's login proxy; the inbox itself publishes nothing.
        "oauth2-proxy": "${INBOX_HOST_PORT:-4180}:4180",
    }
    assert {name: compose["services"][name]["ports"] for name in expected} == {
        name: [port] for name, port in expected.items()
    }
    advertised = compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert "EXTERNAL://localhost:${KAFKA_HOST_PORT:-9092}" in advertised.split(",")


def test_topic_init_runs_our_own_topics_create(compose: dict[str, Any]) -> None:
    # yaml.safe_load resolves the `<<: *bridge` merge.
    init = compose["services"]["topic-init"]
    assert init["command"] == ["topics", "create"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    # The compose file's own broker unless KAFKA_BOOTSTRAP_SERVERS names another cluster.
    assert init["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "${KAFKA_BOOTSTRAP_SERVERS:-kafka:19092}"
    assert init["build"]["context"] == "."
    assert init["build"]["args"]["BASE_IMAGE"] == "${BASE_IMAGE:-python:3.11-slim}"


def test_every_service_command_is_a_real_cli_command(compose: dict[str, Any]) -> None:
    parser = build_parser()
    for name, service in compose["services"].items():
        if "build" in service and "command" in service:
            parsed = parser.parse_args(service["command"])
            assert callable(parsed.handler), name


@dataclass
class Instruction:
    keyword: str
    args: str


def dockerfile_instructions(path: Path = ROOT / "Dockerfile") -> list[Instruction]:
    """The Dockerfile's instructions, comments dropped and continued lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = (line.strip() for line in text.splitlines())
    return [
        Instruction(keyword.upper(), args.strip())
        for keyword, _, args in (line.partition(" ") for line in lines if line and not line.startswith("#"))
    ]


def test_the_image_builds_on_the_official_python_image_unless_told_otherwise() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == Instruction("ARG", "BASE_IMAGE=python:3.11-slim")
    stages = [instruction.args for instruction in instructions if instruction.keyword == "FROM"]
    assert stages == ["${BASE_IMAGE} AS build", "${BASE_IMAGE}"]


def test_the_broker_dockerfile_copies_files_that_exist() -> None:
    # Its build context is deploy/broker with the fetched jars beside it as libs/ (deploy/container_test.py).
    for instruction in dockerfile_instructions(ROOT / "deploy" / "broker" / "Dockerfile"):
        if instruction.keyword == "COPY":
            *sources, _ = shlex.split(instruction.args)
            for source in sources:
                assert source == "libs" or (ROOT / "deploy" / "broker" / source).is_file(), instruction


def test_dockerfile_copies_files_that_exist() -> None:
    stages: set[str] = set()
    for instruction in dockerfile_instructions():
        if instruction.keyword == "FROM":
            image, _, name = instruction.args.partition(" AS ")
            stages.add(name.strip() or image)
        elif instruction.keyword == "COPY":
            *sources, _ = shlex.split(instruction.args)
            if sources[0].startswith("--from="):
                assert sources[0].removeprefix("--from=") in stages, instruction
                continue
            for source in sources:
                assert (ROOT / source).exists(), f"{instruction}: {source} does not exist"


class ImageBuild:
    """Carries out the Dockerfile's steps on this machine: each stage gets a directory that stands for its
    file system and a fresh virtualenv that stands for its Python. COPY copies, WORKDIR moves, and the RUN
    steps run as written with the stage's own pip; container paths are mapped into the stage's directory.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.stages: dict[str, Path] = {}
        self.root = base
        self.python = Path(sys.executable)
        self.workdir = PurePosixPath("/")
        self.entrypoint: list[str] = []
        self.cmd: list[str] = []
        self.env: dict[str, str] = {}
        self.user = "root"
        # ARG defaults: what a build without --build-arg uses.
        self.args: dict[str, str] = {}
        self.uids: dict[str, int] = {"root": 0}
        # Directories made with an owner (container path -> user name), since ownership is not carried out.
        self.owners: dict[str, str] = {}

    def path(self, container_path: str, root: Path | None = None) -> Path:
        full = self.workdir / container_path  # an absolute container path replaces the workdir
        return (root or self.root) / str(full).lstrip("/")

    def run(self, instruction: Instruction) -> None:
        handler = getattr(self, f"do_{instruction.keyword.lower()}", None)
        assert handler is not None, f"teach this test the Dockerfile instruction {instruction.keyword}"
        handler(instruction.args)

    def do_arg(self, args: str) -> None:
        name, _, default = args.partition("=")
        self.args.setdefault(name, default)

    def do_from(self, args: str) -> None:
        image, _, name = args.partition(" AS ")
        image = re.sub(r"\$\{(\w+)\}", lambda match: self.args[match.group(1)], image)
        assert image.strip().startswith(f"python:{sys.version_info.major}.{sys.version_info.minor}"), image
        self.root = self.base / f"stage{len(self.stages)}"
        self.stages[name.strip() or image] = self.root
        self.root.mkdir()
        venv.create(self.root / "venv", with_pip=True)
        self.python = self.root / "venv" / "bin" / "python"
        self.workdir = PurePosixPath("/")

    def do_workdir(self, args: str) -> None:
        self.workdir = self.workdir / args
        self.path(".").mkdir(parents=True, exist_ok=True)

    def do_copy(self, args: str) -> None:
        *sources, dest = shlex.split(args)
        source_root = ROOT
        if sources[0].startswith("--from="):
            source_root = self.stages[sources.pop(0).removeprefix("--from=")]
            sources = [str(self.path(source, source_root).relative_to(source_root)) for source in sources]
        target = self.path(dest)
        for source in sources:
            origin = source_root / source
            into = target / origin.name if dest.endswith("/") or len(sources) > 1 else target
            if origin.is_dir():
                shutil.copytree(origin, into, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, into)

    def do_run(self, args: str) -> None:
        for step in (shlex.split(part) for part in args.split("&&")):
            if step[0] == "useradd":
                # Would add a user to this machine: only its uid is recorded, and USER is not carried out.
                flags, name = step[1:-1], step[-1]
                self.uids[name] = int(flags[flags.index("--uid") + 1])
                continue
            if step[:2] == ["install", "-d"]:
                owner = dict(zip(step[2:-1:2], step[3:-1:2], strict=True))["-o"]
                self.path(step[-1]).mkdir(parents=True, exist_ok=True)
                self.owners[step[-1]] = owner
                continue
            if step[:2] == ["rm", "-rf"]:
                for target in step[2:]:
                    shutil.rmtree(self.path(target))
                continue
            assert step[0] == "pip", f"teach this test the RUN step {step}"
            # --no-cache-dir only keeps the image small; pip's cache here keeps the test fast.
            pip_args = [arg for arg in step[1:] if arg != "--no-cache-dir"]
            expanded: list[str] = []
            for arg in pip_args:
                if arg.startswith("/") and glob.has_magic(arg):
                    matches = sorted(glob.glob(str(self.path(arg))))
                    assert matches, f"{arg} matches nothing in {step}"
                    expanded.extend(matches)
                elif arg.startswith("/"):
                    expanded.append(str(self.path(arg)))
                else:
                    expanded.append(arg)
            subprocess.run(
                [str(self.python), "-m", "pip", "--quiet", *expanded],
                cwd=self.path("."), check=True, timeout=300,
            )  # fmt: skip

    def do_user(self, args: str) -> None:
        self.user = args

    def do_env(self, args: str) -> None:
        for assignment in shlex.split(args):
            name, _, value = assignment.partition("=")
            self.env[name] = value

    def do_entrypoint(self, args: str) -> None:
        self.entrypoint = json.loads(args)

    def do_cmd(self, args: str) -> None:
        self.cmd = json.loads(args)

    def command(self, *args: str) -> list[str]:
        """The image's entrypoint with ``args`` (the CMD when none), as installed in the last stage."""
        executable, *rest = self.entrypoint
        return [str(self.python.parent / executable), *rest, *(args or self.cmd)]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageBuild:
    """The Dockerfile carried out once for this module's tests."""
    built = ImageBuild(tmp_path_factory.mktemp("image"))
    for instruction in dockerfile_instructions():
        built.run(instruction)
    return built


# Top-level names the offload-bridge distribution installs into site-packages, and the packages of the
# server stack, as a JSON object; run by an installed Python.
INSTALLED_NAMES = """
import importlib.util, json, sys
from importlib.metadata import distribution
files = distribution("offload-bridge").files or []
top = {f.parts[0] for f in files if f.parts[0] != ".." and not f.parts[0].endswith(".dist-info")}
names = ["faust", "aiokafka", "confluent_kafka", "httpx", "fastapi", "starlette", "uvicorn", "yaml",
         "rocksdict", "ingress", "streams", "schemas", "simulator"]
print(json.dumps({"top": sorted(top), "importable": [n for n in names if importlib.util.find_spec(n)]}))
"""
SERVER_PACKAGES = [
    "aiokafka", "confluent_kafka", "fastapi", "faust", "httpx", "rocksdict", "starlette", "uvicorn", "yaml",
]  # fmt: skip


def installed_names(python: Path, cwd: Path) -> dict[str, list[str]]:
    shown = subprocess.run(
        [str(python), "-c", INSTALLED_NAMES], cwd=cwd, env={"PATH": os.defpath, "HOME": str(cwd)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    names: dict[str, list[str]] = json.loads(shown.stdout)
    return names


def test_dockerfile_builds_an_image_whose_entrypoint_works(
    image: ImageBuild, tmp_path: Path, kafka_broker: str
) -> None:
    # Only the runtime stage's own site-packages: nothing leaks in from this checkout or its virtualenv.
    env = {"PATH": os.defpath, "HOME": str(tmp_path), "KAFKA_BOOTSTRAP_SERVERS": kafka_broker}
    cwd = tmp_path

    def entrypoint(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            image.command(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=60
        )

    shown = entrypoint()
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: offload-bridge")
    status = entrypoint("kafka", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert kafka_broker in status.stdout
    # Every package and the generated contracts are in the installed wheel, not only what --help imports.
    check = (
        "import offload_bridge.ingress.app, offload_bridge.streams.app, offload_bridge.simulator.app\n"
        "import offload_bridge.schemas, offload_bridge.cli\n"
        "from importlib.resources import files\n"
        "assert files('offload_bridge.schemas').joinpath('case-events.schema.json').is_file()"
    )
    imported = subprocess.run(
        [str(image.python), "-c", check], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert imported.returncode == 0, imported.stderr
    # The server install puts the project on the import path under offload_bridge only.
    names = installed_names(image.python, cwd)
    assert names["top"] == ["offload_bridge"]
    assert sorted(names["importable"]) == SERVER_PACKAGES
    port = free_port()
    with subprocess.Popen(image.command("simulator", "--port", str(port)), cwd=cwd, env=env) as simulator:
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/_sim/health", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert simulator.poll() is None, f"the simulator exited with {simulator.returncode}"
                assert time.monotonic() < deadline, "the installed simulator did not serve within 60 s"
                time.sleep(0.1)
        finally:
            simulator.terminate()
            simulator.wait(timeout=30)


def test_the_worker_keeps_its_tables_in_a_volume_the_runtime_user_owns(
    image: ImageBuild, compose: dict[str, Any]
) -> None:
    worker = compose["services"]["worker"]
    mounts = dict(volume.split(":", 1) for volume in worker["volumes"])
    data_dir = mounts["worker-data"]
    assert worker["environment"]["OFFLOAD_WORKER_STORE"] == "rocksdb://"
    assert worker["environment"]["OFFLOAD_WORKER_DATA_DIR"] == data_dir
    # The image makes the mount point, owned by the user it runs as: an empty named volume starts as a
    # copy of it, owner included (a path the image lacks becomes a root-owned volume).
    assert image.env["OFFLOAD_WORKER_DATA_DIR"] == data_dir
    assert image.path(data_dir).is_dir()
    assert image.owners[data_dir] == image.user
    assert image.uids[image.user] == 10001
    # The image's own settings: the RocksDB store, under that directory.
    shown = subprocess.run(
        [str(image.python), "-c", "from offload_bridge.settings import Settings; s = Settings(); "
         "print(s.offload_worker_store, s.worker_data_path)"],
        env={"PATH": os.defpath, **image.env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    store, path = shown.stdout.split()
    assert store == "rocksdb://"
    assert PurePosixPath(path).is_relative_to(data_dir)


def test_the_exporter_writes_its_tables_to_a_volume_the_runtime_user_owns(
    image: ImageBuild, compose: dict[str, Any]
) -> None:
    exporter = compose["services"]["exporter"]
    mounts = dict(volume.split(":", 1) for volume in exporter["volumes"])
    tables = mounts["analytics-tables"]
    assert exporter["environment"]["OFFLOAD_EXPORT_TO"] == tables
    assert image.path(tables).is_dir()
    assert image.owners[tables] == image.user


def test_services_have_health_checks_and_start_after_the_topics(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "topic-init", "ingress", "worker", "simulator"} <= set(services)
    for name in ("ingress", "worker", "inbox"):
        assert services[name]["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
        assert "healthcheck" in services[name], name
    assert services["simulator"]["profiles"] == ["demo"]
    assert "/ready" in " ".join(services["inbox"]["healthcheck"]["test"])
    assert services["worker"]["environment"]["OFFLOAD_WORKER_WEB_HOST"] == "0.0.0.0"
    assert "/readyz" in " ".join(services["ingress"]["healthcheck"]["test"])
    assert "/ready" in " ".join(services["worker"]["healthcheck"]["test"])


DOCS = ROOT / "docs"
MAX_CLIENT_DISTRIBUTIONS = 10
# What the client install has besides the standard library.
CLIENT_IMPORTS = {"offload_bridge", "kafka", "pydantic", "pydantic_settings"}


def client_examples() -> list[Example]:
    """The Python examples of the docs that a team runs with the client install: those that import nothing
    beyond it (the docs' examples run in full against a real stack in tests/test_docs_examples.py)."""
    chosen = []
    for example in examples(DOCS):
        if example.language != "python" or not example.runs:
            continue
        roots = {name.split(".")[0] for name in _imported(example.code)}
        if roots <= CLIENT_IMPORTS | set(sys.stdlib_module_names):
            chosen.append(example)
    return chosen


def _imported(code: str) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.append(node.module)
    return names


def _imports_of(code: str) -> str:
    """The import statements of an example, as a script."""
    statements = [node for node in ast.parse(code).body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return "\n".join(ast.unparse(statement) for statement in statements)


def test_the_client_for_teams_installs_light_and_has_what_the_docs_examples_use(
    image: ImageBuild, tmp_path: Path, topics: Settings
) -> None:
    # The wheels the image's build stage made, the project's among them: installed without the network.
    wheels = image.path("/wheels", image.stages["build"])
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "--quiet", "install", "--no-index", "--find-links", str(wheels),
         "offload-bridge"],
        check=True, timeout=300,
    )  # fmt: skip
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True
    )
    distributions = {d["name"].lower() for d in json.loads(listed.stdout)} - {"pip", "setuptools", "wheel"}
    assert "offload-bridge" in distributions
    assert len(distributions) <= MAX_CLIENT_DISTRIBUTIONS, sorted(distributions)
    names = installed_names(python, tmp_path)
    assert names["top"] == ["offload_bridge"]
    assert names["importable"] == [], "the client install brings in the server stack"

    # Every client example of the docs, read from the pages: what it imports is in the client install.
    chosen = client_examples()
    pages = {example.page for example in chosen}
    assert {"how-to/answer-questions.md", "how-to/create-and-track-cases.md"} <= pages, pages
    env = {"PATH": os.defpath, "HOME": str(tmp_path), **settings_env(topics)}
    for example in chosen:
        imported = subprocess.run(
            [str(python), "-c", _imports_of(example.code)], cwd=tmp_path, env=env, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert imported.returncode == 0, f"{example.where}: {imported.stderr}"

    # And the client publishes and waits for outcomes as the docs show, the test playing the worker's part.
    (tmp_path / "case.json").write_text(json.dumps(case_body()))
    cli = str(python.parent / "offload-bridge")
    with subprocess.Popen(
        [cli, "create-case", "case.json", "--wait", "--timeout", "60"], cwd=tmp_path,
        env={**env, "PYTHONUNBUFFERED": "1"},  # each line as printed, not at exit
        stdout=subprocess.PIPE, text=True,
    ) as client:  # fmt: skip
        assert client.stdout is not None
        published = client.stdout.readline().strip()
        assert published.startswith("published requestId=req_"), published
        request_id = published.removeprefix("published requestId=")
        created = CaseRequestOutcome(
            requestId=request_id, outcome=CaseRequestOutcomeKind.CREATED, caseId="case-2", httpStatus=201
        )
        produce(topics, CASE_REQUEST_OUTCOMES, created.model_dump_json().encode(), key=request_id.encode())
        assert "caseId=case-2" in client.stdout.readline()
        assert client.wait(timeout=60) == 0
    tracked = subprocess.run(
        [cli, "track", "case-3", "--requested-by", "billing-team"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert tracked.returncode == 0 and "tracked caseId=case-3" in tracked.stdout, tracked.stderr


def test_make_dist_builds_a_wheel_and_an_sdist_holding_every_module(tmp_path: Path) -> None:
    # The package is on no index yet: this wheel is what the docs install. `-o` keeps make from reinstalling
    # the virtualenv this test runs in.
    built = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "dist", f"DIST={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    [wheel] = tmp_path.glob("offload_bridge-*-py3-none-any.whl")
    [sdist] = tmp_path.glob("offload_bridge-*.tar.gz")
    assert sdist.stat().st_size > 0
    with zipfile.ZipFile(wheel) as archive:
        packaged = set(archive.namelist())
        [metadata] = [name for name in packaged if name.endswith(".dist-info/METADATA")]
        requires = [
            line.removeprefix("Requires-Dist: ")
            for line in archive.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist: ")
        ]
    # Every module and contract of the import root, the linked folders (ingress/, streams/, ...) included.
    expected = {
        str(Path(folder, name).relative_to(ROOT))
        for folder, _, names in os.walk(ROOT / "offload_bridge", followlinks=True)
        for name in names
        if name.endswith((".py", ".json", ".yaml", "py.typed")) and "__pycache__" not in folder
    }
    assert expected - packaged == set()
    assert "offload_bridge/streams/app.py" in expected and "offload_bridge/schemas/asyncapi.yaml" in expected
    # The bounds of the dependencies whose internals we use travel with the wheel.
    assert any(require.startswith("faust-streaming") and "<0.16" in require for require in requires), requires
