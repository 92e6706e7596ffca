"""Private Postfix + Dovecot instances for the real-server test suite (``pytest -m mta``).

Layer: test support only (never imported by ``src/mailsdk``). May import the standard library,
``attrs`` and ``trustme``; must never import ``mailsdk`` (the infrastructure has to work before,
and independently of, the client under test) and never touches system-wide state: every config,
queue, socket, log and Maildir lives in one temporary directory, every listener is on 127.0.0.1.

What :func:`start_mta` brings up (all on 127.0.0.1, ports chosen free at runtime):

* Postfix ``master -d`` (foreground, own ``config_directory``/``queue_directory``) with two
  ``smtpd`` listeners: ``smtp_port`` (plain + STARTTLS, RFC 3207) and ``smtps_port`` (implicit
  TLS, RFC 8314 §3.3). AUTH via Dovecot SASL, only after TLS (``smtpd_tls_auth_only``).
  Mail for ``example.test`` is delivered by Postfix virtual(8) into Maildirs; anything else is
  discarded (nothing ever leaves the machine). Unknown local recipients get ``550 5.1.1``.
* Dovecot (``dovecot -F``) with a passwd-file passdb/userdb (PLAIN, LOGIN, CRAM-MD5,
  SCRAM-SHA-1/-256), an oauth2 passdb (XOAUTH2, OAUTHBEARER) backed by a local RFC 7662
  token-introspection endpoint, and LMTP (RFC 2033) on TCP and on a unix socket, delivering into
  the same Maildirs. Both store LF line ends (the Maildir convention): use :func:`as_sent`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import attrs
import trustme

from .mta_config import (
    DOMAIN,
    MESSAGE_SIZE_LIMIT,
    SERVER_NAME,
    SKIP_REASON,
    Binaries,
    Layout,
    Ports,
    find_binaries,
    find_missing,
    write_config_tree,
)

__all__ = [
    "DOMAIN",
    "SKIP_REASON",
    "Credentials",
    "MtaEnvironment",
    "MtaStartupError",
    "TokenIntrospectionServer",
    "as_sent",
    "build_message",
    "find_missing",
    "start_mta",
    "strip_trace_headers",
]

STARTUP_TIMEOUT = 15.0
SOCKET_TIMEOUT = 5.0
_TRACE_HEADERS = (b"return-path:", b"delivered-to:", b"received:", b"x-original-to:")


class MtaStartupError(RuntimeError):
    """The private Postfix/Dovecot instance did not come up; the message carries the logs."""


@attrs.frozen
class Credentials:
    """A test mailbox: address (also the SASL username), password and, if any, OAuth token."""

    username: str
    password: str = attrs.field(repr=False)
    token: str | None = attrs.field(default=None, repr=False)

    @property
    def local_part(self) -> str:
        """The part before the ``@`` (the Maildir directory name)."""
        return self.username.partition("@")[0]


def strip_trace_headers(raw: bytes) -> bytes:
    """Remove the trace headers servers prepend on delivery (RFC 5321 §4.4).

    Only *leading* ``Return-Path``, ``Delivered-To``, ``Received`` and ``X-Original-To`` fields
    (with their folded continuation lines) are removed, so what remains is what the client sent.

    Args:
        raw: A message as stored in the Maildir.

    Returns:
        The message without the leading trace fields.
    """
    pos = 0
    while True:
        lowered = raw[pos : pos + 32].lower()
        if not lowered.startswith(_TRACE_HEADERS):
            return raw[pos:]
        # Skip this field and its continuation lines (lines starting with SP or HTAB).
        while True:
            end = raw.find(b"\n", pos)
            if end < 0:
                return b""
            pos = end + 1
            if raw[pos : pos + 1] not in (b" ", b"\t"):
                break


def as_sent(stored: bytes) -> bytes:
    """Turn a stored Maildir message back into the message as the client submitted it.

    Strips the leading trace headers (:func:`strip_trace_headers`) and restores CRLF line ends
    (Postfix and Dovecot both store LF). The result is the DATA content before dot-stuffing (or
    the BDAT payload), so tests can compare it byte for byte with what they sent.

    Args:
        stored: A message as read from the Maildir.

    Returns:
        The message with CRLF line ends and without the delivery trace headers.
    """
    return strip_trace_headers(stored).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class TokenIntrospectionServer:
    """A tiny OAuth 2.0 token-introspection endpoint (RFC 7662 §2) for Dovecot's oauth2 passdb.

    ``POST /introspect`` with form field ``token``: a known token answers
    ``{"active": true, "username": ...}``, anything else ``{"active": false}``. Tokens are
    never logged; only the number of requests is kept.
    """

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self.requests = 0
        self._tokens = dict(tokens)
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: no keep-alive state
            timeout = SOCKET_TIMEOUT

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode("ascii", "replace"))
                token = (form.get("token") or [""])[0]
                if not token:  # GET-style/bearer-header modes, for completeness
                    auth = self.headers.get("Authorization", "")
                    token = auth.removeprefix("Bearer ").strip()
                with owner._lock:
                    owner.requests += 1
                    user = owner._tokens.get(token)
                answer = {"active": True, "username": user} if user else {"active": False}
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Stay silent: the request line could carry a token."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/introspect"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="token-introspection", daemon=True
        )

    def add_token(self, token: str, username: str) -> None:
        """Make ``token`` valid for ``username`` (e.g. one issued by a test OAuth authority)."""
        with self._lock:
            self._tokens[token] = username

    def revoke_token(self, token: str) -> None:
        """Make ``token`` inactive from now on."""
        with self._lock:
            self._tokens.pop(token, None)

    def start(self) -> None:
        """Start serving in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(SOCKET_TIMEOUT)
        self._server.server_close()


def build_message(
    to: str, *, sender: str = "sender@client.test", subject: str = "test", body: bytes = b"Hi.\r\n"
) -> tuple[bytes, bytes]:
    """Build a small CRLF message with a unique Message-ID.

    Args:
        to: The ``To:`` header value.
        sender: The ``From:`` header value.
        subject: The ``Subject:`` header value (may be non-ASCII: sent as raw UTF-8, RFC 6532).
        body: The body, CRLF line ends.

    Returns:
        ``(message, message_id)``; pass the Message-ID to
        :meth:`MtaEnvironment.wait_for_message` as the marker.
    """
    message_id = f"<{uuid.uuid4().hex}@client.test>".encode()
    headers = (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        "Date: Sun, 22 Nov 2026 12:00:00 +0000\r\n"
    ).encode()
    return headers + b"Message-ID: " + message_id + b"\r\n\r\n" + body, message_id


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@attrs.frozen
class MtaEnvironment:
    """A running private Postfix + Dovecot; what the tests (and fixtures) need to talk to it.

    Attributes:
        root: The private temporary directory holding everything.
        host: Always ``"127.0.0.1"``.
        smtp_port: Postfix smtpd, plain with STARTTLS; AUTH only after TLS.
        smtps_port: Postfix smtpd with implicit TLS (wrapper mode).
        lmtp_port: Dovecot LMTP on TCP.
        lmtp_socket: Dovecot LMTP unix socket path.
        ca: The trustme CA that signed the server certificate.
        ca_file: PEM of that CA, for clients' ``cafile``.
        users: Test mailboxes by local part (``alice``, ``bob``, ``carol``).
        introspection: The token endpoint (``.url``, ``.requests``).
        message_size_limit: Postfix ``message_size_limit`` (advertised as SIZE).
    """

    root: Path
    host: str
    smtp_port: int
    smtps_port: int
    lmtp_port: int
    lmtp_socket: Path
    ca: trustme.CA
    ca_file: Path
    users: dict[str, Credentials]
    introspection: TokenIntrospectionServer
    message_size_limit: int = MESSAGE_SIZE_LIMIT
    server_name: str = SERVER_NAME
    domain: str = DOMAIN

    def client_context(self) -> ssl.SSLContext:
        """Return a verifying client ``SSLContext`` trusting only the test CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def maildir(self, user: str) -> Path:
        """Return the Maildir of ``user`` (a local part or a full address)."""
        return self.root / "mail" / self.domain / user.partition("@")[0]

    def messages(self, user: str) -> list[bytes]:
        """Return every message delivered to ``user``, oldest first (raw bytes as stored).

        Maildir files of the form ``new/<unique>`` (and ``cur/`` once a reader saw them); the
        Maildir is written by Postfix virtual(8) for SMTP and by Dovecot for LMTP deliveries.
        """
        files: list[Path] = []
        for sub in ("new", "cur"):
            directory = self.maildir(user) / sub
            if directory.is_dir():
                files.extend(p for p in directory.iterdir() if p.is_file())
        files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [p.read_bytes() for p in files]

    def wait_for_message(self, user: str, marker: bytes, timeout: float = 10.0) -> bytes:
        """Wait until a message containing ``marker`` lands in ``user``'s Maildir.

        Postfix delivers asynchronously (queue manager, then LMTP), so this polls.

        Args:
            user: Local part or address of a test mailbox.
            marker: Bytes unique to the awaited message (e.g. its Message-ID).
            timeout: Seconds to wait.

        Returns:
            The stored message (raw, LF line ends; see :func:`as_sent`).

        Raises:
            AssertionError: Nothing arrived in time (the message includes the server logs).
        """
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages(user):
                if marker in message:
                    return message
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no message containing {marker!r} for {user} after {timeout}s\n" + self.logs()
                )
            time.sleep(0.05)

    def logs(self, tail: int = 60) -> str:
        """Return the last ``tail`` lines of every server log (for failure messages)."""
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            lines = path.read_text(errors="replace").splitlines()[-tail:]
            parts.append(f"==> {path.name} <==\n" + "\n".join(lines))
        return "\n".join(parts)


def _wait_for_banner(
    addr: tuple[str, int] | str, *, tls: ssl.SSLContext | None, procs: list[subprocess.Popen[bytes]]
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise MtaStartupError(f"{proc.args!r} exited with status {proc.returncode}")
        try:
            family = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as raw:
                raw.settimeout(SOCKET_TIMEOUT)
                raw.connect(addr)
                sock: socket.socket = raw
                if tls is not None:
                    sock = tls.wrap_socket(raw, server_hostname="127.0.0.1")
                banner = sock.recv(512)
                if banner.startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    with suppress(OSError):
                        sock.recv(512)
                    if sock is not raw:
                        sock.close()
                    return
                last_error = MtaStartupError(f"unexpected banner {banner!r}")
        except OSError as exc:
            last_error = exc
        time.sleep(0.05)
    raise MtaStartupError(f"no 220 banner from {addr!r} within {STARTUP_TIMEOUT}s: {last_error}")


def _wait_for_path(path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not path.exists():
        for proc in procs:
            if proc.poll() is not None:
                raise MtaStartupError(f"{proc.args!r} exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise MtaStartupError(f"{path} did not appear within {STARTUP_TIMEOUT}s")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started in its own session: SIGTERM, wait, then SIGKILL the whole group."""
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    # Children (smtpd, qmgr, auth, lmtp...) share the process group; make sure none survive.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() can kill every child
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
        )


_REAPER = """\
import os, shutil, signal, sys, time
groups = [int(line) for line in sys.stdin if line.strip()]  # returns at EOF: pytest is gone
for sig in (signal.SIGTERM, signal.SIGKILL):
    for group in groups:
        try:
            os.killpg(group, sig)
        except OSError:
            pass
    time.sleep(2 if sig == signal.SIGTERM else 0)
shutil.rmtree(sys.argv[1], ignore_errors=True)
"""


class _Reaper:
    """A sidecar that stops the servers and deletes the directory if pytest dies abruptly.

    It blocks reading a pipe only this process writes to; the kernel closes that pipe however
    we die (even SIGKILL), and the sidecar then kills the recorded process groups. On a normal
    stop it is disarmed first, and :func:`_stop` does the work.
    """

    def __init__(self, root: Path) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _REAPER, str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal must not kill it early
        )

    def watch(self, proc: subprocess.Popen[bytes]) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(f"{proc.pid}\n".encode())
        self._proc.stdin.flush()

    def disarm(self) -> None:
        self._proc.kill()
        self._proc.wait(timeout=5)
        assert self._proc.stdin is not None
        with suppress(OSError):
            self._proc.stdin.close()


DEFAULT_USERS = {
    "alice": Credentials("alice@example.test", "alice-Secr3t!", token="good-token"),
    "bob": Credentials("bob@example.test", "bob-Secr3t!"),
    "carol": Credentials("carol@example.test", "carol-Secr3t!"),
}


def _port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _check_ports_free(*ports: int) -> None:
    busy = [port for port in ports if _port_busy(port)]
    if busy:
        raise MtaStartupError(f"ports taken by another process meanwhile: {busy}")


def _launch(
    binaries: Binaries, ports: Ports, base: Path | None, stack: ExitStack
) -> MtaEnvironment:
    """Write the tree and start Dovecot, then Postfix; ``stack`` undoes everything."""
    root = Path(tempfile.mkdtemp(prefix="mailsdk-mta-", dir=base))
    if os.environ.get("MAILSDK_MTA_KEEP", "") in ("", "0"):  # keep it to debug a failure
        stack.callback(shutil.rmtree, root, ignore_errors=True)
    introspection = TokenIntrospectionServer(
        {u.token: u.username for u in DEFAULT_USERS.values() if u.token}
    )
    stack.callback(introspection.stop)
    procs: list[subprocess.Popen[bytes]] = []
    reaper = _Reaper(root)

    def stop_servers() -> None:
        reaper.disarm()
        for proc in reversed(procs):
            _stop(proc)

    stack.callback(stop_servers)
    layout = Layout(root)
    ca = trustme.CA()
    env = MtaEnvironment(
        root=root,
        host="127.0.0.1",
        smtp_port=ports.smtp,
        smtps_port=ports.smtps,
        lmtp_port=ports.lmtp,
        lmtp_socket=layout.lmtp_socket,
        ca=ca,
        ca_file=layout.tls / "ca.pem",
        users=dict(DEFAULT_USERS),
        introspection=introspection,
    )
    write_config_tree(
        layout,
        ports,
        users=[(u.username, u.password) for u in env.users.values()],
        introspection_url=introspection.url,
        server_pem=ca.issue_cert(
            "127.0.0.1", "localhost", SERVER_NAME
        ).private_key_and_cert_chain_pem.bytes(),
        ca_pem=ca.cert_pem.bytes(),
    )
    introspection.start()
    try:
        _check_ports_free(ports.lmtp)
        dovecot = [binaries.dovecot, "-F", "-c", str(layout.dovecot / "dovecot.conf")]
        procs.append(_spawn(dovecot, layout.logs / "dovecot.out"))
        reaper.watch(procs[-1])
        _wait_for_path(layout.auth_socket, procs)
        _wait_for_banner((env.host, ports.lmtp), tls=None, procs=procs)
        _wait_for_banner(str(layout.lmtp_socket), tls=None, procs=procs)
        _check_ports_free(ports.smtp, ports.smtps)  # Postfix would take 5 s to give up
        master = [binaries.postfix_master, "-c", str(layout.postfix), "-d"]
        procs.append(_spawn(master, layout.logs / "postfix.out"))
        reaper.watch(procs[-1])
        _wait_for_banner((env.host, ports.smtp), tls=None, procs=procs)
        _wait_for_banner((env.host, ports.smtps), tls=env.client_context(), procs=procs)
    except MtaStartupError as exc:
        # Read the logs now: the stack deletes them on the way out.
        raise MtaStartupError(f"{exc}\n{env.logs()}") from exc
    return env


@contextmanager
def start_mta(base: Path | None = None, *, attempts: int = 3) -> Iterator[MtaEnvironment]:
    """Start private Postfix and Dovecot instances; stop them and delete everything on exit.

    Dovecot starts first (Postfix needs its auth and LMTP sockets); each step waits for a 220
    banner, so when this yields every listener answers. Ports are picked free at runtime; if
    another process grabs one before the servers bind it, the start is retried on new ports.

    Args:
        base: Parent for the private directory (default: the system temp dir). It must be
            traversable by the ``postfix``/``dovecot`` users, so not a 0700 pytest tmp dir.
        attempts: Starts to try when a port turns out to be taken.

    Yields:
        The running :class:`MtaEnvironment`.

    Raises:
        MtaStartupError: A server failed to start in time; the message includes the logs.
    """
    binaries, missing = find_binaries()
    if binaries is None:
        raise MtaStartupError(f"missing {', '.join(missing)}: {SKIP_REASON}")
    for attempt in range(1, attempts + 1):
        ports = Ports(*_free_ports(3))
        with ExitStack() as stack:
            try:
                env = _launch(binaries, ports, base, stack)
            except MtaStartupError as exc:
                stack.close()  # servers stopped: a port still busy now belongs to someone else
                busy = [port for port in attrs.astuple(ports) if _port_busy(port)]
                if busy and attempt < attempts:
                    continue
                note = f"\nports taken by another process: {busy}" if busy else ""
                raise MtaStartupError(f"{exc}{note}") from None
            yield env
            return
