"""``offload-bridge run``: the whole stack on one machine, stopped cleanly by Ctrl-C.

The local broker (unless KAFKA_BOOTSTRAP_SERVERS names a cluster), the topics, the simulator (unless
OFFLOAD_API_KEY is set: then the real Offload at OFFLOAD_BASE_URL), the ingress and a worker. Each service
is a child process in its own process group with its log under the run directory.

The commands a user runs beside the stack (``questions``, ``answer``, ``create-case``, ``reconcile``) need
the same settings: where the broker and the worker are, the simulator's key, the ingress as the public
webhook URL. The run writes them to ``<run dir>/env`` (shell ``export`` lines, readable by its owner only,
since they may hold tokens) and the banner prints the line that loads them, then commands that run as
printed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from offload_bridge.demo import SIMULATOR_KEY, run_demo
from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.kafka.local_broker import LocalBroker
from offload_bridge.processes import ServiceProcess
from offload_bridge.settings import LOCAL_HOST, Settings

READY_TIMEOUT_S = 180.0
# The quickstart's case, shipped with the repository: the banner offers it when run from a checkout.
EXAMPLE_CASE = Path("examples") / "case.json"
# Who the browser is in the inbox `make run` starts (with OFFLOAD_ALLOW_INSECURE_DEFAULTS=1).
DEV_PERSON = "you@localhost"
# Settings a command run beside the stack needs besides those set explicitly: the run's own choices.
_RUN_ENV = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "OFFLOAD_TOPIC_PREFIX",
    "OFFLOAD_BASE_URL",
    "OFFLOAD_API_KEY",
    "OFFLOAD_WORKER_URL",
    "OFFLOAD_PUBLIC_WEBHOOK_URL",
)


def cli_command() -> str:
    """How to run this install's ``offload-bridge`` from the current directory, as a shell word.

    ``offload-bridge`` when that name on PATH is this install's (an activated virtualenv); else the path of
    the script next to this Python (``.venv/bin/offload-bridge`` from a checkout), relative when below the
    current directory; else ``python -m offload_bridge.cli``.
    """
    script = Path(sys.executable).with_name("offload-bridge")
    on_path = shutil.which("offload-bridge")
    if on_path is not None and script.exists() and Path(on_path).resolve() == script.resolve():
        return "offload-bridge"
    if not script.exists():
        return f"{shlex.quote(sys.executable)} -m offload_bridge.cli"
    absolute = script if script.is_absolute() else Path.cwd() / script
    try:
        shown = str(absolute.relative_to(Path.cwd()))
    except ValueError:
        shown = str(absolute)
    return shlex.quote(shown)


def write_env_file(path: Path, env: dict[str, str]) -> None:
    """``export NAME=value`` lines, shell-quoted, in a file only its owner can read (it may hold tokens);
    replaced whole, so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# The settings of `offload-bridge run`, for commands run beside it: . " + shlex.quote(str(path))
    ]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())]
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        os.fchmod(file.fileno(), 0o600)  # an older file of another mode is truncated, not recreated
        file.write("\n".join(lines) + "\n")
    os.replace(partial, path)


class StackFailed(RuntimeError):
    """A service did not come up, or died; the message names it and points at its log."""


@dataclass
class Service:
    name: str
    process: ServiceProcess
    ready_url: str
    log_path: Path


@dataclass
class Stack:
    settings: Settings
    run_dir: Path
    simulator_port: int = 8900
    simulator_step_ms: int | None = None
    services: list[Service] = field(default_factory=list)
    started_broker: LocalBroker | None = None
    # What the banner says of the broker: started here (and stopped at exit), reused, or another cluster.
    kafka_note: str = ""

    @property
    def simulator_url(self) -> str:
        return f"http://{LOCAL_HOST}:{self.simulator_port}"

    @property
    def uses_simulator(self) -> bool:
        """No OFFLOAD_API_KEY, or the simulator's key at the simulator's address: the settings of an earlier
        run loaded from its env file name this run's own simulator, not a real Offload."""
        key = self.settings.offload_api_key
        if key is None:
            return True
        configured = str(self.settings.offload_base_url).rstrip("/")
        return key.get_secret_value() == SIMULATOR_KEY and configured == self.simulator_url

    @property
    def offload_url(self) -> str:
        if self.uses_simulator:
            return self.simulator_url
        return str(self.settings.offload_base_url).rstrip("/")

    @property
    def env_path(self) -> Path:
        return self.run_dir / "env"

    @property
    def ingress_url(self) -> str:
        return f"http://{self.settings.offload_ingress_host}:{self.settings.offload_ingress_port}"

    @property
    def inbox_url(self) -> str:
        return f"http://{self.settings.offload_inbox_host}:{self.settings.offload_inbox_port}"

    @property
    def inbox_person(self) -> str | None:
        """Who the browser is in the local inbox: a development machine needs no proxy to sign in."""
        if self.settings.offload_inbox_dev_person:
            return self.settings.offload_inbox_dev_person
        return DEV_PERSON if self.settings.offload_allow_insecure_defaults else None

    @property
    def worker_url(self) -> str:
        return self.settings.worker_url

    @property
    def webhook_url(self) -> str:
        tokens = self.settings.webhook_tokens
        return f"{self.ingress_url}/webhooks/offload" + (f"/{tokens[0]}" if tokens else "")

    @property
    def webhook_url_shown(self) -> str:
        """The webhook URL as printed: a path token is a secret."""
        suffix = "/<token from OFFLOAD_WEBHOOK_TOKENS>" if self.settings.webhook_tokens else ""
        return f"{self.ingress_url}/webhooks/offload{suffix}"

    @property
    def inbox_shown(self) -> str:
        if self.inbox_person is not None:
            return f"(answer in a browser, as {self.inbox_person}: no sign-in on a development machine)"
        return "(behind your identity-aware proxy: see the docs, Answer in the browser)"

    @property
    def worker_auth_shown(self) -> str:
        """How to pass the worker's token, without printing it."""
        if self.settings.worker_api_tokens:
            return " (header Authorization: Bearer <first of OFFLOAD_WORKER_API_TOKENS>)"
        return ""

    def _explicit(self) -> set[str]:
        """The environment variables of the settings set on purpose (not left at their defaults)."""
        return {name.upper() for name in self.settings.model_fields_set}

    def _env(self) -> dict[str, str]:
        env = self.settings.as_env()  # every setting, defaults included
        if "OFFLOAD_WORKER_DATA_DIR" not in self._explicit():
            # The run directory holds the worker's tables unless OFFLOAD_WORKER_DATA_DIR says otherwise.
            env["OFFLOAD_WORKER_DATA_DIR"] = str(self.run_dir / "worker-data")
        if self.uses_simulator:
            env["OFFLOAD_BASE_URL"] = self.offload_url
            env["OFFLOAD_API_KEY"] = SIMULATOR_KEY
            env["SIMULATOR_API_KEYS"] = SIMULATOR_KEY
            # Cases created through the bridge (create-case) get their webhooks: the simulator reaches
            # the local ingress. A real Offload could not, so it gets no such default.
            env.setdefault("OFFLOAD_PUBLIC_WEBHOOK_URL", self.webhook_url)
        return env

    def commands_env(self) -> dict[str, str]:
        """The settings of the commands run beside the stack: those set explicitly, and the run's own
        (broker, topic prefix, Offload's address and key, the worker's URL, the public webhook URL)."""
        env = {**self._env(), "OFFLOAD_WORKER_URL": self.worker_url}
        wanted = self._explicit() | set(_RUN_ENV)
        wanted.discard("OFFLOAD_WORKER_DATA_DIR")  # the worker's, not the commands'
        return {name: value for name, value in env.items() if name in wanted}

    def _add(self, name: str, args: list[str], ready_url: str, env: dict[str, str] | None = None) -> None:
        log_path = self.run_dir / "logs" / f"{name}.log"
        process = ServiceProcess(args, env={**self._env(), **(env or {})}, log_path=log_path)
        self.services.append(Service(name, process, ready_url, log_path))

    def _start_broker(self) -> None:
        """The local broker: started here (and stopped at exit), or reused as found (and left running)."""
        if self.settings.uses_external_kafka:
            self.kafka_note = f"{self.settings.bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS)"
            return
        broker = LocalBroker.from_settings(self.settings)
        reused = f"{broker.bootstrap} (was already running: reused, and left running at exit)"
        if broker.is_up():
            print(f"kafka      reusing the broker already running on {broker.bootstrap}", flush=True)
            self.kafka_note = reused
            return
        print(f"kafka      starting on {broker.bootstrap} ...", flush=True)
        if broker.start(timeout_s=self.settings.offload_kafka_start_timeout_s):
            self.started_broker = broker
            self.kafka_note = f"{broker.bootstrap} (started here, stopped at exit)"
        else:
            self.kafka_note = reused  # another one came up meanwhile

    def start(self) -> None:
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        self._start_broker()
        ensure_topics(self.settings)
        print(f"topics     ready (prefix {self.settings.offload_topic_prefix!r})", flush=True)
        if self.uses_simulator:
            args = ["simulator", "--port", str(self.simulator_port)]
            if self.simulator_step_ms is not None:
                args += ["--step-ms", str(self.simulator_step_ms)]
            self._add("simulator", args, f"{self.offload_url}/_sim/health")
        port = str(self.settings.offload_ingress_port)
        self._add("ingress", ["ingress", "--port", port], f"{self.ingress_url}/readyz")
        self._add("worker", ["worker"], f"{self.worker_url}/ready")
        inbox_env = {"OFFLOAD_WORKER_URL": self.worker_url}
        if self.inbox_person is not None:
            inbox_env["OFFLOAD_INBOX_DEV_PERSON"] = self.inbox_person
        self._add("inbox", ["inbox"], f"{self.inbox_url}/ready", inbox_env)
        for service in self.services:
            service.process.start()
        for service in self.services:
            try:
                service.process.wait_http(service.ready_url, timeout_s=READY_TIMEOUT_S)
            except (RuntimeError, TimeoutError) as error:
                raise StackFailed(f"{service.name} did not start; see {service.log_path}: {error}") from None
            print(f"{service.name:<10} ready at {service.ready_url.rsplit('/', 1)[0]}", flush=True)
        write_env_file(self.env_path, self.commands_env())

    def check_alive(self) -> None:
        for service in self.services:
            process = service.process.process
            if process is not None and process.poll() is not None:
                raise StackFailed(
                    f"{service.name} exited with {process.returncode}; see {service.log_path}:\n"
                    + service.process.log_tail(10)
                )

    def stop(self) -> None:
        """Stop every service, then the broker if we started it; a second Ctrl-C or SIGTERM, or one
        service failing to stop, must not leave the others running."""
        previous = {
            signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            for service in reversed(self.services):
                try:
                    service.process.stop()
                except Exception as error:  # keep going: the rest must stop too
                    print(f"{service.name}: could not stop cleanly: {error}", file=sys.stderr)
                    service.process.kill()
            if self.started_broker is not None:
                self.started_broker.stop()
                self.started_broker = None
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def banner(self) -> str:
        cli = cli_command()
        offload = (
            f"simulator at {self.offload_url} (key {SIMULATOR_KEY})"
            if self.uses_simulator
            else f"Offload at {self.offload_url}"
        )
        if EXAMPLE_CASE.is_file():
            create = f"  {cli} create-case {EXAMPLE_CASE} --wait"
        else:
            create = f"  {cli} create-case CASE.json --wait   # a POST /cases body (examples/case.json)"
        lines = [
            "",
            "offload-bridge is running",
            f"  kafka     {self.kafka_note}",
            f"  Offload   {offload}",
            f"  webhooks  {self.webhook_url_shown}",
            f"  cases     {self.worker_url}/cases/CASE_ID{self.worker_auth_shown}",
            f"  inbox     {self.inbox_url}/ {self.inbox_shown}",
            f"  logs      {self.run_dir / 'logs'}",
            f"  settings  {self.env_path} (broker, worker, Offload's key, the webhook URL)",
            "",
            "In another terminal, in this directory: load the settings, then answer Offload's questions:",
            f"  . {shlex.quote(str(self.env_path))}",
            f"  {cli} questions",
            f"  {cli} answer CASE_ID 'Yes, a signed PDF is fine.' --wait",
            "Create a case (the quickstart's; its webhooks come to the ingress), follow it, check it:",
            create,
            f"  {cli} tail",
            f"  {cli} case CASE_ID",
            f"  {cli} reconcile --all-open",
        ]
        activate = Path(shlex.split(cli)[0]).with_name("activate")
        if cli != "offload-bridge" and activate.is_file():
            lines.append(f"(Or `. {shlex.quote(str(activate))}` once, and type offload-bridge alone.)")
        return "\n".join([*lines, "", "Ctrl-C stops everything."])


@contextmanager
def running_stack(stack: Stack) -> Iterator[Stack]:
    """Start the stack; always stop it, whatever happened."""
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(stack: Stack, demo: bool = False) -> int:
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with running_stack(stack):
            print(stack.banner(), flush=True)
            if demo:
                run_demo(stack)
            while True:
                stack.check_alive()
                time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
