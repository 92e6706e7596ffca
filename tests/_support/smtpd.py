"""aiosmtpd on loopback with a recording handler (aiosmtplib's ``tests/smtpd.py`` idea).

Not collected. :func:`start_smtpd` starts a threaded aiosmtpd ``Controller`` (TCP on 127.0.0.1 or
::1, or a unix socket) with options for STARTTLS, implicit TLS, AUTH, SMTPUTF8, SIZE, refused
senders/recipients, a refused DATA, LMTP with per-recipient results, and advertised
PIPELINING/CHUNKING. aiosmtpd processes pipelined commands in order already, so PIPELINING only
needs advertising; BDAT is a small ``smtp_BDAT`` added to the server class.

Everything the client sends is recorded by :class:`Recorder`: the raw bytes (after TLS, the
decrypted bytes), each command verb and argument, every reply line pushed, and each message.
"""

from __future__ import annotations

import functools
import os
import socket
import ssl
import threading
import typing
from collections.abc import Callable, Collection

import attrs
from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

__all__ = ["Message", "Recorder", "RecordingHandler", "SmtpdServer", "start_smtpd"]


@attrs.define
class Message:
    """One message the server accepted (after DATA or BDAT LAST)."""

    mail_from: str
    mail_options: list[str]
    rcpt_tos: list[str]
    rcpt_options: list[list[str]]
    content: bytes


@attrs.define
class Recorder:
    """What the server saw. Lists are appended from the server thread; read them after the call."""

    raw: bytearray = attrs.field(factory=bytearray)
    chunks: list[bytes] = attrs.field(factory=list)
    commands: list[tuple[str, str | None]] = attrs.field(factory=list)
    replies: list[str] = attrs.field(factory=list)
    messages: list[Message] = attrs.field(factory=list)
    auth_logins: list[bytes] = attrs.field(factory=list)
    ehlo_names: list[str] = attrs.field(factory=list)
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    @property
    def verbs(self) -> list[str]:
        """The command verbs received, in order (AUTH continuation lines are not commands)."""
        with self.lock:
            return [verb for verb, _ in self.commands]


class RecordingHandler:
    """aiosmtpd handler: records, refuses what it is told to, answers with a queue id.

    Args:
        recorder: where to record.
        refuse_rcpt: recipients refused at RCPT with 550 5.1.1.
        refuse_sender: senders refused at MAIL with 553 5.7.1.
        data_reply: replaces the end-of-data reply (e.g. ``"554 5.6.0 rejected"``).
        lmtp_fail: with LMTP, recipients whose delivery fails after the data (452 4.2.2).
        extra_ehlo: extension lines added to the EHLO/LHLO reply (``"PIPELINING"``...).
    """

    def __init__(
        self,
        recorder: Recorder,
        *,
        refuse_rcpt: Collection[str] = (),
        refuse_sender: Collection[str] = (),
        data_reply: str | None = None,
        lmtp: bool = False,
        lmtp_fail: Collection[str] = (),
        extra_ehlo: Collection[str] = (),
    ) -> None:
        self.recorder = recorder
        self.refuse_rcpt = {a.lower() for a in refuse_rcpt}
        self.refuse_sender = {a.lower() for a in refuse_sender}
        self.data_reply = data_reply
        self.lmtp = lmtp
        self.lmtp_fail = {a.lower() for a in lmtp_fail}
        self.extra_ehlo = list(extra_ehlo)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: typing.Any,
        envelope: typing.Any,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        self.recorder.ehlo_names.append(hostname)
        last = responses[-1]
        extra = [f"250-{kw}" for kw in self.extra_ehlo]
        return [*responses[:-1], *extra, last]

    async def handle_MAIL(
        self,
        server: SMTP,
        session: typing.Any,
        envelope: typing.Any,
        address: str,
        options: list[str],
    ) -> str:
        if address.lower() in self.refuse_sender:
            return f"553 5.7.1 <{address}>: Sender address rejected"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: typing.Any,
        envelope: typing.Any,
        address: str,
        options: list[str],
    ) -> str:
        if address.lower() in self.refuse_rcpt:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(options)
        return "250 2.1.5 OK"

    async def handle_VRFY(
        self, server: SMTP, session: typing.Any, envelope: typing.Any, address: str
    ) -> str:
        if address.lower() in self.refuse_rcpt:
            return "550 5.1.1 unknown user"
        return f"252 2.1.5 Cannot VRFY user, but will accept message for <{address}>"

    async def handle_DATA(self, server: SMTP, session: typing.Any, envelope: typing.Any) -> str:
        content = envelope.original_content or b""
        message = Message(
            envelope.mail_from,
            list(envelope.mail_options),
            list(envelope.rcpt_tos),
            [list(o) for o in envelope.rcpt_options],
            bytes(content),
        )
        with self.recorder.lock:
            self.recorder.messages.append(message)
            n = len(self.recorder.messages)
        if self.data_reply is not None:
            return self.data_reply
        if self.lmtp:
            lines = []
            for rcpt in envelope.rcpt_tos:
                if rcpt.lower() in self.lmtp_fail:
                    lines.append(f"452 4.2.2 <{rcpt}> mailbox full")
                else:
                    lines.append(f"250 2.1.5 <{rcpt}> delivered as QID{n:04d}")
            return "\r\n".join(lines)
        return f"250 2.0.0 OK: queued as QID{n:04d}"


def _recording(base: type[SMTP]) -> type[SMTP]:
    class Recording(base):  # type: ignore[valid-type,misc]
        """aiosmtpd server class that records bytes, commands and replies; adds EXPN and BDAT."""

        def __init__(self, handler: RecordingHandler, **kwargs: typing.Any) -> None:
            super().__init__(handler, **kwargs)
            self.recorder = handler.recorder
            self._bdat: list[bytes] = []
            self._smtp_methods = {
                name: self._wrap(name, m) for name, m in self._smtp_methods.items()
            }

        def _wrap(
            self, name: str, method: Callable[[str | None], typing.Awaitable[None]]
        ) -> Callable[..., typing.Any]:
            @functools.wraps(method)
            async def recorded(arg: str | None) -> None:
                with self.recorder.lock:
                    self.recorder.commands.append((name, arg))
                await method(arg)

            return recorded

        def data_received(self, data: bytes) -> None:
            with self.recorder.lock:
                self.recorder.raw += data
                self.recorder.chunks.append(bytes(data))
            super().data_received(data)

        async def push(self, status: typing.AnyStr) -> None:
            text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
            with self.recorder.lock:
                self.recorder.replies.extend(text.split("\r\n"))
            await super().push(status)

        async def smtp_EXPN(self, arg: str | None) -> None:
            if not arg:
                await self.push("501 Syntax: EXPN <list>")
            elif arg.lower() == "staff":
                await self.push("250-Alice <alice@example.com>\r\n250 Bob <bob@example.com>")
            else:
                await self.push("550 5.1.1 no such list")

        async def smtp_BDAT(self, arg: str | None) -> None:
            # RFC 3030 §2: BDAT <size> [LAST]; the chunk follows the command line at once.
            parts = (arg or "").split()
            if not parts or not parts[0].isdigit():
                await self.push("501 Syntax: BDAT <size> [LAST]")
                return
            chunk = await self._reader.readexactly(int(parts[0]))
            self._bdat.append(chunk)
            last = len(parts) > 1 and parts[1].upper() == "LAST"
            if not last:
                await self.push(f"250 2.0.0 {len(chunk)} octets received")
                return
            envelope = self.envelope
            if envelope is None or not envelope.rcpt_tos:
                self._bdat = []
                await self.push("503 5.5.1 need RCPT")
                return
            envelope.original_content = envelope.content = b"".join(self._bdat)
            self._bdat = []
            status = await self._call_handler_hook("DATA")
            self._set_post_data_state()
            await self.push(status)

    return Recording


RecordingSMTP = _recording(SMTP)
RecordingLMTP = _recording(LMTP)


class _TcpController(Controller):
    def __init__(
        self, handler: RecordingHandler, *, server_class: type[SMTP], **kwargs: typing.Any
    ) -> None:
        self._server_class = server_class
        super().__init__(handler, **kwargs)

    def factory(self) -> SMTP:
        return self._server_class(self.handler, **self.SMTP_kwargs)


class _UnixController(UnixSocketController):
    def __init__(
        self, handler: RecordingHandler, *, server_class: type[SMTP], **kwargs: typing.Any
    ) -> None:
        self._server_class = server_class
        super().__init__(handler, **kwargs)

    def factory(self) -> SMTP:
        return self._server_class(self.handler, **self.SMTP_kwargs)


@attrs.define
class SmtpdServer:
    """A running aiosmtpd server; ``recorder`` shows what it saw."""

    host: str
    port: int
    path: str | None
    recorder: Recorder
    handler: RecordingHandler
    controller: Controller | UnixSocketController

    def stop(self) -> None:
        """Stop the server thread (idempotent)."""
        if getattr(self.controller, "_thread", None) is not None:
            self.controller.stop()
        if self.path is not None and os.path.exists(self.path):
            os.unlink(self.path)


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _authenticator(users: dict[str, str], recorder: Recorder) -> Callable[..., AuthResult]:
    def authenticate(
        server: object, session: object, envelope: object, mechanism: str, auth_data: object
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        recorder.auth_logins.append(auth_data.login)
        expected = users.get(auth_data.login.decode("utf-8", "replace"))
        ok = expected is not None and auth_data.password == expected.encode()
        return AuthResult(success=ok, handled=False)

    return authenticate


def start_smtpd(
    *,
    host: str = "127.0.0.1",
    unix_path: str | None = None,
    starttls: ssl.SSLContext | None = None,
    require_starttls: bool = False,
    implicit_tls: ssl.SSLContext | None = None,
    users: dict[str, str] | None = None,
    auth_require_tls: bool = True,
    smtputf8: bool = True,
    data_size_limit: int | None = 33_554_432,
    lmtp: bool = False,
    refuse_rcpt: Collection[str] = (),
    refuse_sender: Collection[str] = (),
    data_reply: str | None = None,
    lmtp_fail: Collection[str] = (),
    pipelining: bool = False,
    chunking: bool = False,
    server_hostname: str = "mx.test",
) -> SmtpdServer:
    """Start an aiosmtpd server; see the module docstring. Stop it with :meth:`SmtpdServer.stop`.

    Args:
        starttls: offer STARTTLS with this server context.
        implicit_tls: TLS from the first byte with this server context.
        users: enable AUTH (PLAIN, LOGIN) with these username -> password pairs.
        auth_require_tls: AUTH is advertised only after TLS (aiosmtpd's default).
        data_size_limit: advertised as SIZE; ``None`` advertises no SIZE.
    """
    recorder = Recorder()
    extra = [e for e, on in (("PIPELINING", pipelining), ("CHUNKING", chunking)) if on]
    handler = RecordingHandler(
        recorder,
        refuse_rcpt=refuse_rcpt,
        refuse_sender=refuse_sender,
        data_reply=data_reply,
        lmtp=lmtp,
        lmtp_fail=lmtp_fail,
        extra_ehlo=extra,
    )
    kwargs: dict[str, typing.Any] = {
        "server_class": RecordingLMTP if lmtp else RecordingSMTP,
        "server_hostname": server_hostname,
        "enable_SMTPUTF8": smtputf8,
        "data_size_limit": data_size_limit,
        "decode_data": False,
        "ident": "ESMTP mailsdk-test",
        "ready_timeout": 5.0,
        "timeout": 10,
    }
    if starttls is not None:
        kwargs["tls_context"] = starttls
        kwargs["require_starttls"] = require_starttls
    if implicit_tls is not None:
        kwargs["ssl_context"] = implicit_tls
    if users is not None:
        kwargs["authenticator"] = _authenticator(users, recorder)
        kwargs["auth_require_tls"] = auth_require_tls
    controller: Controller | UnixSocketController
    if unix_path is not None:
        controller = _UnixController(handler, unix_socket=unix_path, **kwargs)
        port = 0
    else:
        port = _free_port(host)
        controller = _TcpController(handler, hostname=host, port=port, **kwargs)
    controller.start()
    # The controller's own start-up probe connection is not part of any test.
    with recorder.lock:
        recorder.raw.clear()
        recorder.chunks.clear()
        recorder.commands.clear()
        recorder.replies.clear()
    return SmtpdServer(host, port, unix_path, recorder, handler, controller)
