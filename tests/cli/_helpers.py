"""Helpers of the command-line tests (see conftest.py)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import typing

from tests._support.smtpd import SmtpdServer

PASSWORD = "pw-Secret-123"
USER = "alice"
REFUSED = "nobody@example.net"


class Cli:
    """Runs the command line; ``env`` is the child's whole environment."""

    def __init__(self, home: pathlib.Path) -> None:
        self.home = home
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSDK_")}
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_CACHE_HOME=str(home / ".cache"),
            COLUMNS="200",
            PYTHONDONTWRITEBYTECODE="1",
        )
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
            env.pop(name, None)
        self.env = env

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mailsdk", *args]

    def __call__(
        self,
        *args: str,
        input: bytes | str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            self.argv(*args),
            input=data if data is not None else b"",
            env={**self.env, **(env or {})},
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        return subprocess.CompletedProcess(
            proc.args,
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )


def server_args(server: SmtpdServer, ca_file: str, *extra: str) -> list[str]:
    return ["--server", f"127.0.0.1:{server.port}", "--ca-file", ca_file, "--timeout", "20", *extra]


def write_config(cli: Cli, text: str) -> pathlib.Path:
    path = cli.home / ".config" / "mailsdk" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def no_secret(proc: subprocess.CompletedProcess[str], *secrets: str) -> None:
    for secret in (PASSWORD, *secrets):
        assert secret not in proc.stdout, "a secret reached stdout"
        assert secret not in proc.stderr, "a secret reached stderr"


Json = dict[str, typing.Any]
