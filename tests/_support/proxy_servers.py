"""Real proxy servers for the tests: Debian's danted (SOCKS4/5) and tinyproxy (HTTP CONNECT).

Not collected. ``scripts/install-proxies.sh`` installs both and creates the system user the
SOCKS5 username/password tests log in as. Each server runs as a private process on loopback
with a config file in a temporary directory, and is stopped by the PID this module started.
Without the binaries the fixtures skip with the reason, unless ``MAILSDK_REQUIRE_PROXIES=1``
(CI), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

__all__ = [
    "SOCKS_PASSWORD",
    "SOCKS_USER",
    "HTTP_PASSWORD",
    "HTTP_USER",
    "ProxyServer",
    "danted",
    "require",
    "tinyproxy",
]

#: The system user scripts/install-proxies.sh creates for danted's "username" method.
SOCKS_USER = "mailsdk-proxy-test"
SOCKS_PASSWORD = "mailsdk-proxy-pw"
#: tinyproxy's BasicAuth pair (configured in its file, no system user involved).
HTTP_USER = "mailsdk-http"
HTTP_PASSWORD = "s3cretHttpPw"  # tinyproxy's parser takes no quotes or spaces

DANTED = "/usr/sbin/danted"
TINYPROXY_CANDIDATES = ("/usr/bin/tinyproxy", "/usr/sbin/tinyproxy")
REQUIRED = os.environ.get("MAILSDK_REQUIRE_PROXIES", "") not in ("", "0")
START_TIMEOUT = 10.0


def require(binary: str | None, what: str) -> str:
    """Return ``binary`` or skip (fail under MAILSDK_REQUIRE_PROXIES) naming the install step."""
    if binary is not None and os.access(binary, os.X_OK):
        return binary
    reason = f"{what} is not installed (run: sudo bash scripts/install-proxies.sh)"
    if REQUIRED:
        pytest.fail(f"MAILSDK_REQUIRE_PROXIES is set but {reason}")
    pytest.skip(reason)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ProxyServer:
    """A running proxy process: its URL parts, its log, and a PID-based stop."""

    def __init__(self, name: str, argv: list[str], port: int, workdir: Path) -> None:
        self.name = name
        self.host = "127.0.0.1"
        self.port = port
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def url(self, scheme: str, user: str | None = None, password: str | None = None) -> str:
        """``scheme://[user[:password]@]127.0.0.1:port`` with the parts percent-encoded."""
        from urllib.parse import quote

        auth = ""
        if user is not None:
            auth = quote(user, safe="")
            if password is not None:
                auth += ":" + quote(password, safe="")
            auth += "@"
        return f"{scheme}://{auth}{self.host}:{self.port}"

    def log(self) -> str:
        """What the server logged so far (for assertion messages)."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {self.port}:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM the process we started (by PID), then SIGKILL it if it lingers."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        if not self._log.closed:
            self._log.close()


@contextlib.contextmanager
def _workdir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def danted(*, auth: bool) -> Iterator[ProxyServer]:
    """danted on 127.0.0.1: SOCKS4 and SOCKS5; with ``auth`` SOCKS5 needs SOCKS_USER's password.

    The username method checks the system password database, so danted runs its
    authentication as root ("user.privileged") and everything else as nobody.
    """
    binary = require(DANTED, "dante-server (danted)")
    if auth and not _user_exists(SOCKS_USER):
        require(None, f"the system user {SOCKS_USER}")
    with _workdir("mailsdk-danted-") as workdir:
        port = _free_port()
        config = workdir / "danted.conf"
        config.write_text(
            "\n".join(
                [
                    "logoutput: stderr",
                    f"internal: 127.0.0.1 port = {port}",
                    "external: 127.0.0.1",
                    "external: ::1",
                    f"socksmethod: {'username' if auth else 'none'}",
                    "clientmethod: none",
                    "user.privileged: root",
                    "user.unprivileged: nobody",
                    "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }",
                    # "log: connect" lets a test check the tunnel really went through danted.
                    "socks pass {\n from: 127.0.0.0/8 to: 0.0.0.0/0\n command: connect\n"
                    " log: connect\n}",
                    "socks pass {\n from: 127.0.0.0/8 to: ::/0\n command: connect\n"
                    " log: connect\n}",
                    "",
                ]
            )
        )
        server = ProxyServer("danted", [binary, "-f", str(config), "-N", "1"], port, workdir)
        try:
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def tinyproxy(connect_ports: Iterable[int], *, auth: bool = False) -> Iterator[ProxyServer]:
    """tinyproxy on 127.0.0.1 allowing CONNECT to ``connect_ports`` only (``ConnectPort``)."""
    binary = require(
        next((b for b in TINYPROXY_CANDIDATES if os.access(b, os.X_OK)), None), "tinyproxy"
    )
    with _workdir("mailsdk-tinyproxy-") as workdir:
        port = _free_port()
        lines = [
            f"Port {port}",
            "Listen 127.0.0.1",
            "Timeout 30",
            "MaxClients 20",
            "Allow 127.0.0.1",
            "LogLevel Info",
            "DisableViaHeader Yes",
        ]
        if os.geteuid() == 0:
            lines += ["User nobody", "Group nogroup"]
        if auth:
            lines.append(f"BasicAuth {HTTP_USER} {HTTP_PASSWORD}")
        lines += [f"ConnectPort {p}" for p in connect_ports]
        config = workdir / "tinyproxy.conf"
        config.write_text("\n".join(lines) + "\n")
        server = ProxyServer("tinyproxy", [binary, "-d", "-c", str(config)], port, workdir)
        try:
            yield server
        finally:
            server.stop()
