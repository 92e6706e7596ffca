"""Servers, client runs and span helpers for the end-to-end telemetry tests.

Not collected. Everything here is self-contained on purpose (no dependency on shared fixtures
that are still changing): the in-memory OpenTelemetry SDK pipeline, an aiosmtpd ``Controller``
(SMTP or LMTP) on 127.0.0.1 with a recording handler, a raw threaded socket server that plays a
script for hostile or PIPELINING cases, the sync/async client runs, and helpers to read and
check span trees (used by ``test_client_spans.py``).
"""

from __future__ import annotations

import socket
import ssl
import threading
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence

import attrs
from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from mailsdk import ClientBuilder
from mailsdk.flows import SendResult
from mailsdk.telemetry import attributes as names
from mailsdk.transport import TlsSettings

__all__ = [
    "BOB",
    "CAROL",
    "DAVE",
    "IO_TIMEOUT",
    "MESSAGE",
    "Otel",
    "PASSWORD",
    "Peer",
    "RawServer",
    "Received",
    "SENDER",
    "Smtpd",
    "USER",
    "WRONG_PASSWORD",
    "assert_well_formed",
    "attrs_of",
    "children",
    "command_codes",
    "connect",
    "connect_and_send",
    "free_port",
    "greet",
    "iter_strings",
    "lmtp_builder",
    "metric_points",
    "only",
    "plain",
    "recipient_events",
    "sendmail",
    "statuses",
    "tls_builder",
    "tree",
]

#: Every socket the tests own gives up after this many seconds (never hang).
IO_TIMEOUT: typing.Final = 5.0

SENDER = "alice@example.org"
BOB, CAROL, DAVE = "bob@example.com", "carol@example.net", "dave@example.com"
MESSAGE = b"From: alice@example.org\r\nSubject: telemetry\r\n\r\nHello, spans.\r\n"
USER = "mailer"
PASSWORD = "S3cr3t-Pa55w0rd-zq9"
WRONG_PASSWORD = "Wr0ng-Pa55w0rd-xk7"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- OpenTelemetry SDK, passed in explicitly (never the global providers) ------------------------


class Otel:
    """A ``TracerProvider`` + ``MeterProvider`` pair exporting to memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def options(self, **extra: typing.Any) -> dict[str, typing.Any]:
        """Keyword arguments for ``ClientBuilder.with_opentelemetry``."""
        return {
            "tracer_provider": self.tracer_provider,
            "meter_provider": self.meter_provider,
            **extra,
        }

    def spans(self) -> list[ReadableSpan]:
        """Every finished span, in start order."""
        return sorted(self.exporter.get_finished_spans(), key=lambda s: s.start_time or 0)

    def shutdown(self) -> None:
        """Shut both providers down."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def metric_points(
    reader: InMemoryMetricReader,
) -> dict[str, list[tuple[dict[str, typing.Any], typing.Any]]]:
    """``{metric name: [(attributes, data point), ...]}`` from one collection."""
    result: dict[str, list[tuple[dict[str, typing.Any], typing.Any]]] = {}
    data = reader.get_metrics_data()
    if data is None:
        return result
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                points = result.setdefault(metric.name, [])
                points.extend((dict(p.attributes or {}), p) for p in metric.data.data_points)
    return result


def children(parent: ReadableSpan, spans: Iterable[ReadableSpan]) -> list[ReadableSpan]:
    """The direct children of ``parent``, in start order."""
    pid = parent.context.span_id
    found = [s for s in spans if s.parent is not None and s.parent.span_id == pid]
    return sorted(found, key=lambda s: s.start_time or 0)


def only(spans: Iterable[ReadableSpan], name: str) -> ReadableSpan:
    """The single span called ``name`` (fails the test if there are 0 or several)."""
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"expected one {name!r} span, got {len(found)}"
    return found[0]


def tree(spans: Sequence[ReadableSpan]) -> list[str]:
    """The span forest as indented ``name`` lines, children in start order."""
    ids = {s.context.span_id for s in spans}
    roots = [s for s in spans if s.parent is None or s.parent.span_id not in ids]
    lines: list[str] = []

    def walk(span: ReadableSpan, depth: int) -> None:
        lines.append("  " * depth + span.name)
        for child in children(span, spans):
            walk(child, depth + 1)

    for root in sorted(roots, key=lambda s: s.start_time or 0):
        walk(root, 0)
    return lines


# -- aiosmtpd -----------------------------------------------------------------------------------


@attrs.define
class Received:
    """One message an aiosmtpd server accepted."""

    sender: str
    recipients: list[str]
    content: bytes


class _Handler:
    """Records messages; refuses the configured recipients at RCPT (SMTP) or after DATA (LMTP)."""

    def __init__(self, refuse: Sequence[str], lmtp_fail: Sequence[str]) -> None:
        self.refuse = {r.lower() for r in refuse}
        self.lmtp_fail = {r.lower() for r in lmtp_fail}
        self.received: list[Received] = []

    async def handle_RCPT(
        self,
        server: SMTP,
        session: object,
        envelope: typing.Any,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() in self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: object, envelope: typing.Any) -> str:
        content = bytes(envelope.original_content or b"")
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), content))
        if not isinstance(server, LMTP):
            return "250 2.0.0 OK: queued"
        # LMTP (RFC 2033 §4.2): one reply per accepted recipient, in RCPT order. aiosmtpd
        # pushes the returned status followed by CRLF, so embedded CRLFs give several replies.
        lines = [
            f"452 4.2.2 <{r}>: mailbox full"
            if r.lower() in self.lmtp_fail
            else f"250 2.0.0 <{r}> delivered"
            for r in envelope.rcpt_tos
        ]
        return "\r\n".join(lines)


class _Controller(Controller):
    def __init__(self, handler: _Handler, *, lmtp: bool, **kwargs: typing.Any) -> None:
        super().__init__(handler, **kwargs)
        self._lmtp = lmtp

    def factory(self) -> SMTP:
        cls = LMTP if self._lmtp else SMTP
        return cls(self.handler, **self.SMTP_kwargs)


class Smtpd:
    """aiosmtpd in its own thread on 127.0.0.1. Use as a context manager.

    Args:
        refuse: recipients refused at RCPT with 550.
        lmtp: speak LMTP (LHLO, one reply per recipient after DATA).
        lmtp_fail: LMTP recipients accepted at RCPT but failing after DATA with 452.
        tls_context: enables STARTTLS (required when ``credentials`` are given).
        credentials: (user, password) pairs the authenticator accepts; anything else fails.
    """

    def __init__(
        self,
        *,
        refuse: Sequence[str] = (),
        lmtp: bool = False,
        lmtp_fail: Sequence[str] = (),
        tls_context: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.handler = _Handler(refuse, lmtp_fail)
        self.port = free_port()
        kwargs: dict[str, typing.Any] = {"hostname": "127.0.0.1", "port": self.port}
        if tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=True)
        if credentials is not None:
            user, password = credentials

            def authenticator(
                server: SMTP, session: object, envelope: object, mechanism: str, data: object
            ) -> AuthResult:
                ok = (
                    isinstance(data, LoginPassword)
                    and data.login == user.encode()
                    and data.password == password.encode()
                )
                # handled=False: aiosmtpd then sends 535 itself (its default is True, which
                # means "the reply was already sent" and leaves the client waiting).
                return AuthResult(success=ok, handled=False)

            kwargs.update(authenticator=authenticator, auth_require_tls=True)
        self._controller = _Controller(self.handler, lmtp=lmtp, **kwargs)

    @property
    def received(self) -> list[Received]:
        """The messages accepted so far."""
        return self.handler.received

    def __enter__(self) -> Smtpd:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


# -- raw scripted server ------------------------------------------------------------------------


class Peer:
    """The server side of one accepted connection, with line-oriented reads."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""
        self.received = bytearray()

    def send(self, data: bytes) -> None:
        """Write ``data`` in one ``sendall``."""
        self.sock.sendall(data)

    def read_until(self, marker: bytes) -> bytes:
        """Read until ``marker`` has been received; return everything up to and including it.

        Raises:
            ConnectionError: the client closed the connection first.
        """
        while marker not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"client closed before {marker!r}")
            self._buffer += chunk
            self.received += chunk
        index = self._buffer.index(marker) + len(marker)
        data, self._buffer = self._buffer[:index], self._buffer[index:]
        return data

    def line(self) -> bytes:
        """Read one CRLF-terminated line (the CRLF included)."""
        return self.read_until(b"\r\n")


class RawServer:
    """A one-connection loopback server in a thread, playing ``script(peer)``.

    The script runs with a socket timeout of :data:`IO_TIMEOUT`; whatever it raises is kept
    in :attr:`error` and re-raised by :meth:`check`. The connection is closed when the script
    returns (that is how a script "drops" the connection).
    """

    def __init__(self, script: Callable[[Peer], None]) -> None:
        self._script = script
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(IO_TIMEOUT)
        self.port = int(self._listener.getsockname()[1])
        self.error: BaseException | None = None
        self.peer: Peer | None = None
        self._thread = threading.Thread(target=self._serve, name="raw-smtp", daemon=True)

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError as exc:
            self.error = exc
            return
        with conn:
            conn.settimeout(IO_TIMEOUT)
            self.peer = Peer(conn)
            try:
                self._script(self.peer)
            except BaseException as exc:  # reported by check()
                self.error = exc

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(IO_TIMEOUT * 2)
        self._listener.close()

    def check(self) -> None:
        """Wait for the script to finish and re-raise what it raised, if anything."""
        self._thread.join(IO_TIMEOUT * 2)
        assert not self._thread.is_alive(), "the scripted server is still running"
        if self.error is not None:
            raise self.error


def greet(peer: Peer, *keywords: str) -> None:
    """Send the 220 greeting, read EHLO and answer it advertising ``keywords``."""
    peer.send(b"220 raw.test ESMTP ready\r\n")
    line = peer.line()
    assert line.upper().startswith(b"EHLO "), line
    lines = ["raw.test greets you", *keywords]
    reply = "".join(
        f"250{'-' if i < len(lines) - 1 else ' '}{text}\r\n" for i, text in enumerate(lines)
    )
    peer.send(reply.encode("ascii"))


def iter_strings(value: object) -> Iterator[str]:
    """Every string inside an attribute value (a str or a sequence of them)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from iter_strings(item)
    else:
        yield str(value)


# -- client runs and span assertions ------------------------------------------------------------------------------------


def plain(port: int, otel: Otel, **options: object) -> ClientBuilder:
    """A plaintext SMTP builder for 127.0.0.1:``port`` with short timeouts and telemetry on."""
    return (
        ClientBuilder.smtp("127.0.0.1", port)
        .with_tls("none")
        .with_timeouts(IO_TIMEOUT)
        .with_local_hostname("client.test")
        .with_opentelemetry(**otel.options(**options))
    )


async def sendmail(
    mode: str, builder: ClientBuilder, recipients: Sequence[str], message: bytes = MESSAGE
) -> SendResult:
    """One-shot send (connect, send, QUIT) with the client of ``mode``."""
    if mode == "sync":
        return builder.build().sendmail(SENDER, recipients, message)
    return await builder.build_async().sendmail(SENDER, recipients, message)


async def connect_and_send(
    mode: str, builder: ClientBuilder, recipients: Sequence[str]
) -> tuple[str | None, SendResult]:
    """Connect, send one message and leave the session block; return (mechanism, result)."""
    if mode == "sync":
        with builder.build().connect() as session:
            return session.mechanism, session.sendmail(SENDER, recipients, MESSAGE)
    async with await builder.build_async().connect() as asession:
        return asession.mechanism, await asession.sendmail(SENDER, recipients, MESSAGE)


async def connect(mode: str, builder: ClientBuilder) -> None:
    """Connect and leave the session block at once."""
    if mode == "sync":
        with builder.build().connect():
            return
    async with await builder.build_async().connect():
        return


def attrs_of(span: ReadableSpan) -> dict[str, typing.Any]:
    return dict(span.attributes or {})


def assert_well_formed(spans: Sequence[ReadableSpan]) -> ReadableSpan:
    """Common invariants; returns the single session span.

    One trace, one root (``smtp.session``, no parent: no ambient span in the tests), every
    span of kind CLIENT, every child inside its parent's time range.
    """
    assert spans, "no span was exported"
    session = only(spans, names.SPAN_SESSION)
    assert session.parent is None
    assert {s.context.trace_id for s in spans} == {session.context.trace_id}
    assert {s.kind for s in spans} == {SpanKind.CLIENT}
    by_id = {s.context.span_id: s for s in spans}
    for span in spans:
        if span is session:
            continue
        assert span.parent is not None and span.parent.span_id in by_id, span.name
        parent = by_id[span.parent.span_id]
        assert parent.start_time is not None and span.start_time is not None
        assert parent.end_time is not None and span.end_time is not None
        assert parent.start_time <= span.start_time <= span.end_time <= parent.end_time
    return session


def statuses(spans: Sequence[ReadableSpan]) -> list[tuple[str, StatusCode]]:
    return [(s.name, s.status.status_code) for s in spans]


def command_codes(spans: Sequence[ReadableSpan]) -> list[tuple[str, int | None]]:
    return [(s.name, attrs_of(s).get(names.SMTP_REPLY_CODE)) for s in spans]


def tls_builder(
    port: int, otel: Otel, client_tls: TlsSettings, password: str = PASSWORD
) -> ClientBuilder:
    return (
        ClientBuilder.smtp("127.0.0.1", port)
        .with_tls("starttls", settings=client_tls)
        .with_credentials(USER, password)
        .with_timeouts(IO_TIMEOUT)
        .with_local_hostname("client.test")
        .with_opentelemetry(**otel.options())
    )


def lmtp_builder(port: int, otel: Otel, **options: object) -> ClientBuilder:
    return (
        ClientBuilder.smtp("127.0.0.1", port)
        .with_lmtp()
        .with_tls("none")
        .with_timeouts(IO_TIMEOUT)
        .with_local_hostname("client.test")
        .with_opentelemetry(**otel.options(**options))
    )


def recipient_events(span: ReadableSpan) -> list[dict[str, typing.Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == names.EVENT_RECIPIENT_REPLY]
