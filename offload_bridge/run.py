"""``offload-bridge run``: the whole stack on one machine, stopped cleanly by Ctrl-C.

The local broker (unless KAFKA_BOOTSTRAP_SERVERS names a cluster), the topics, the simulator (unless
OFFLOAD_API_KEY is set: then the real Offload at OFFLOAD_BASE_URL), the ingress and a worker. Each service
is a child process in its own process group with its log under the run directory.
"""

from __future__ import annotations

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

    @property
    def uses_simulator(self) -> bool:
        return self.settings.offload_api_key is None

    @property
    def offload_url(self) -> str:
        if self.uses_simulator:
            return f"http://{LOCAL_HOST}:{self.simulator_port}"
        return str(self.settings.offload_base_url).rstrip("/")

    @property
    def ingress_url(self) -> str:
        return f"http://{self.settings.offload_ingress_host}:{self.settings.offload_ingress_port}"

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
    def worker_auth_shown(self) -> str:
        """How to pass the worker's token, without printing it."""
        if self.settings.worker_api_tokens:
            return " (header Authorization: Bearer <first of OFFLOAD_WORKER_API_TOKENS>)"
        return ""

    def _env(self) -> dict[str, str]:
        env = self.settings.as_env()
        env.setdefault("OFFLOAD_WORKER_DATA_DIR", str(self.run_dir / "worker-data"))
        if self.uses_simulator:
            env["OFFLOAD_BASE_URL"] = self.offload_url
            env["OFFLOAD_API_KEY"] = SIMULATOR_KEY
            env["SIMULATOR_API_KEYS"] = SIMULATOR_KEY
        return env

    def _add(self, name: str, args: list[str], ready_url: str) -> None:
        log_path = self.run_dir / "logs" / f"{name}.log"
        process = ServiceProcess(args, env=self._env(), log_path=log_path)
        self.services.append(Service(name, process, ready_url, log_path))

    def start(self) -> None:
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        if not self.settings.uses_external_kafka:
            broker = LocalBroker.from_settings(self.settings)
            print(f"kafka      starting on {broker.bootstrap} ...", flush=True)
            if broker.start(timeout_s=self.settings.offload_kafka_start_timeout_s):
                self.started_broker = broker
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
        for service in self.services:
            service.process.start()
        for service in self.services:
            try:
                service.process.wait_http(service.ready_url, timeout_s=READY_TIMEOUT_S)
            except (RuntimeError, TimeoutError) as error:
                raise StackFailed(f"{service.name} did not start; see {service.log_path}: {error}") from None
            print(f"{service.name:<10} ready at {service.ready_url.rsplit('/', 1)[0]}", flush=True)

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
        key = SIMULATOR_KEY if self.uses_simulator else "$OFFLOAD_API_KEY"
        offload = (
            f"simulator at {self.offload_url} (key {SIMULATOR_KEY})"
            if self.uses_simulator
            else (f"Offload at {self.offload_url}")
        )
        return "\n".join(
            [
                "",
                "offload-bridge is running",
                f"  Offload   {offload}",
                f"  webhooks  {self.webhook_url_shown}",
                f"  cases     {self.worker_url}/cases/CASE_ID{self.worker_auth_shown}",
                f"  logs      {self.run_dir / 'logs'}",
                "",
                "Create a case whose webhooks come to the ingress:",
                f"  curl -s -X POST {self.offload_url}/cases -H 'x-api-key: {key}' "
                '-H \'content-type: application/json\' -d \'{"channel": "EMAIL", '
                '"goal": {"objective": "Collect a signed W-9", "knowledge": "AP onboarding"}, '
                '"counterparty": {"address": "ap@northstar.example", "name": "Maya Chen"}, '
                '"senderPersona": {"name": "Avery"}, "metadata": {"simScenario": "input_then_complete"}, '
                f'"clientWebhookUrl": "{self.webhook_url_shown}"}}\'',
                "Follow it, then answer its question:",
                "  offload-bridge tail",
                "  offload-bridge answer CASE_ID INPUT_REQUEST_ID 'Yes, a signed PDF is fine.' --wait",
                "",
                "Ctrl-C stops everything.",
            ]
        )


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
