"""Project commands run as real child processes, each in its own process group, always cleaned up.

Used by ``offload-bridge run`` to start the stack and by the tests to start services.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx


class ServiceProcess:
    """A project command run as a real child process in its own process group; always cleaned up."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.args = [sys.executable, "-m", "offload_bridge.cli", *args]
        # What failures call the process: the command's arguments, the interpreter left out.
        self.label = " ".join(["offload-bridge", *args])
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def program(
        cls,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> ServiceProcess:
        """Another program than the project's (a tool the tests run beside it), handled the same way."""
        service = cls([], env=env, log_path=log_path, cwd=cwd)
        service.args = list(argv)
        service.label = Path(argv[0]).name
        return service

    def start(self) -> ServiceProcess:
        output: Any = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.args, env=self.env, stdout=output, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.cwd,
        )  # fmt: skip
        if self.log_path:
            output.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def wait_http(self, url: str, timeout_s: float = 60.0, ok: Sequence[int] = (200,)) -> httpx.Response:
        """Poll ``url`` until it answers with one of ``ok``; fail early if the process died."""
        deadline = time.monotonic() + timeout_s
        last: str = "no answer"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.process.returncode}: {self.log_tail()}")
            try:
                response = httpx.get(url, timeout=2.0)
                if response.status_code in ok:
                    return response
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as error:
                last = type(error).__name__
            time.sleep(0.2)
        raise TimeoutError(f"{url} did not answer {list(ok)} within {timeout_s}s ({last}): {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def stop(self, grace_s: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace_s``; returns the exit code."""
        if self.process is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        # Children the service left in its group go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash would."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)


@contextlib.contextmanager
def running(service: ServiceProcess) -> Iterator[ServiceProcess]:
    service.start()
    try:
        yield service
    finally:
        service.stop()
