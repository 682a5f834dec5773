"""Secure by default: placeholder or short tokens are refused outside local development, an ingress others can
reach does not start without authentication, and secrets can come from files instead of the environment."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from offload_bridge.settings import Settings, SettingsError, load_settings
from offload_bridge.testing import ServiceProcess, free_port, running, settings_env
from tests.test_settings import clear_environment

# What templates and examples carry: each must be refused as a real token.
WEAK_TOKENS = {
    "set-me": "shorter than 16 characters",
    "set-me-to-a-long-random-token": "a placeholder (contains 'set-me')",
    "change-me-before-deploying": "a placeholder (contains 'change-me')",
    "my-example-token-0001": "a placeholder (contains 'example')",
    "0123456789abcde": "shorter than 16 characters",
}
TOKEN_VARIABLES = ("OFFLOAD_WEBHOOK_TOKENS", "OFFLOAD_WORKER_API_TOKENS")


@pytest.mark.parametrize("variable", TOKEN_VARIABLES)
@pytest.mark.parametrize("token", WEAK_TOKENS)
def test_weak_tokens_are_refused_outside_local_development(
    monkeypatch: pytest.MonkeyPatch, variable: str, token: str
) -> None:
    clear_environment(monkeypatch)
    # One strong token beside it does not make the list safe: each token of the list opens the door.
    monkeypatch.setenv(variable, f"{secrets.token_hex(16)},{token}")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    message = str(refused.value)
    assert token not in message, "a secret is never echoed"
    if variable == "OFFLOAD_WORKER_API_TOKENS" and len(token) < 16:
        # Short worker tokens were refused before, on a development machine too.
        assert f"{variable}: Value error, each token must be at least 16 printable ASCII" in message
        return
    assert f"{variable}: Value error, a token is {WEAK_TOKENS[token]}" in message
    assert "OFFLOAD_ALLOW_INSECURE_DEFAULTS=1" in message


@pytest.mark.parametrize("variable", TOKEN_VARIABLES)
def test_local_development_accepts_them_and_random_tokens_always_pass(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    clear_environment(monkeypatch)
    monkeypatch.setenv(variable, "set-me-to-a-long-random-token")
    monkeypatch.setenv("OFFLOAD_ALLOW_INSECURE_DEFAULTS", "1")
    load_settings()
    monkeypatch.delenv("OFFLOAD_ALLOW_INSECURE_DEFAULTS")
    for strong in (secrets.token_hex(24), secrets.token_urlsafe(24)):
        monkeypatch.setenv(variable, strong)
        load_settings()


def test_a_webhook_token_is_one_url_path_segment(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_environment(monkeypatch)
    monkeypatch.setenv("OFFLOAD_WEBHOOK_TOKENS", secrets.token_hex(12) + "/" + secrets.token_hex(12))
    with pytest.raises(SettingsError, match="OFFLOAD_WEBHOOK_TOKENS: Value error, a token may hold"):
        load_settings()


def _ingress(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offload_bridge.cli", "ingress", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_an_ingress_others_can_reach_does_not_start_without_authentication(settings: Settings) -> None:
    env = {**settings_env(settings), "OFFLOAD_WEBHOOK_TOKENS": "", "OFFLOAD_WEBHOOK_SECRET": ""}
    refused = _ingress(env, "--host", "0.0.0.0", "--port", str(free_port()))
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        "offload-bridge: OFFLOAD_WEBHOOK_TOKENS is not set and the ingress would listen on 0.0.0.0: anyone "
        "reaching it could publish forged case events. Set OFFLOAD_WEBHOOK_TOKENS (`openssl rand -hex 24`) "
        "or OFFLOAD_WEBHOOK_SECRET; OFFLOAD_ALLOW_INSECURE_DEFAULTS=1 allows it on a development machine"
    ]


@pytest.mark.parametrize(
    ("host", "extra"),
    [
        ("0.0.0.0", {"OFFLOAD_WEBHOOK_TOKENS": secrets.token_hex(24)}),
        ("0.0.0.0", {"OFFLOAD_ALLOW_INSECURE_DEFAULTS": "1"}),
        ("127.0.0.1", {}),  # this machine only: a warning, as before
    ],
    ids=["token", "development-machine", "loopback"],
)
def test_the_ingress_starts_with_a_token_on_loopback_or_on_a_development_machine(
    topics: Settings, tmp_path: Path, host: str, extra: dict[str, str]
) -> None:
    port = free_port()
    env = {**settings_env(topics), "OFFLOAD_WEBHOOK_TOKENS": "", **extra}
    log = tmp_path / "ingress.log"
    service = ServiceProcess(["ingress", "--host", host, "--port", str(port)], env=env, log_path=log)
    with running(service):
        # Raises when the process exits or does not answer.
        service.wait_http(f"http://127.0.0.1:{port}/healthz", timeout_s=60)


def test_secrets_come_from_files_of_the_secrets_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clear_environment(monkeypatch)
    password, token = secrets.token_hex(12), secrets.token_hex(20)
    # Named after the variable, as a mounted Kubernetes Secret or a compose bind mount lays them out.
    (tmp_path / "KAFKA_SASL_PASSWORD").write_text(password + "\n")
    (tmp_path / "OFFLOAD_WEBHOOK_TOKENS").write_text(token)
    (tmp_path / "ca.crt").write_text("not a setting: ignored")
    monkeypatch.setenv("OFFLOAD_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "bridge")
    settings = load_settings()
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == password
    assert settings.webhook_tokens == (token,)
    # The environment wins over a file.
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "from-the-environment")
    assert load_settings().kafka_sasl_password.get_secret_value() == "from-the-environment"  # type: ignore[union-attr]
    # The rules hold for values from files too.
    (tmp_path / "OFFLOAD_WEBHOOK_TOKENS").write_text("set-me")
    with pytest.raises(SettingsError, match="OFFLOAD_WEBHOOK_TOKENS"):
        load_settings()


def test_a_missing_secrets_directory_and_blank_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clear_environment(monkeypatch)
    monkeypatch.setenv("OFFLOAD_SECRETS_DIR", str(tmp_path / "not-there"))
    with pytest.raises(
        SettingsError, match=r"OFFLOAD_SECRETS_DIR: Value error, no such directory: .*not-there"
    ):
        load_settings()
    monkeypatch.delenv("OFFLOAD_SECRETS_DIR")
    # docker-compose.yml passes `${KAFKA_SSL_CAFILE:-}`: empty is unset.
    for variable in ("KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE", "KAFKA_SASL_USERNAME"):
        monkeypatch.setenv(variable, "")
    settings = load_settings()
    assert (settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_sasl_username) == (
        None,
        None,
        None,
    )
