"""aiosmtpd on loopback with a recording handler (aiosmtplib's ``tests/smtpd.py`` idea).

Not collected. :func:`start_smtpd` starts a threaded aiosmtpd server (TCP on 127.0.0.1 or ::1,
or a unix socket) with options for STARTTLS, implicit TLS (with the suite's own certificates),
AUTH, SMTPUTF8, SIZE, refused senders/recipients, a refused DATA, LMTP with per-recipient
results, and advertised PIPELINING/CHUNKING.

It is built on the user test kit's parts (``mailsdk.testing``): its protocol classes (BDAT,
start-up probe kept out of the records), its PLAIN/LOGIN authenticator, its controllers and
free-port retry. What is test-only stays here: the handler's refusals and LMTP results, EXPN,
and a :class:`Recorder` with the full argument of every command (AUTH included: the kit keeps
only the mechanism), each chunk as read, and every reply line pushed (BDAT's per-chunk
acknowledgements excepted), beside the kit's transcript and logins.
"""

from __future__ import annotations

import functools
import os
import ssl
import threading
import typing
from collections.abc import Callable, Collection

import attrs
from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.smtp import SMTP

from mailsdk.testing._aiosmtpd import (
    ScriptedLMTP,
    ScriptedSMTP,
    ServerState,
    authenticator,
    make_protocol,
)
from mailsdk.testing._listen import start_controller
from mailsdk.testing.records import Recording
from mailsdk.testing.rules import Script

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
    """What the server saw. Lists are appended from the server thread; read them after the call.

    ``raw`` and ``auth_logins`` come from the kit's :class:`~mailsdk.testing.Recording`
    (``kit``), which shares its lock.
    """

    kit: Recording = attrs.field(factory=Recording)
    chunks: list[bytes] = attrs.field(factory=list)
    commands: list[tuple[str, str | None]] = attrs.field(factory=list)
    replies: list[str] = attrs.field(factory=list)
    messages: list[Message] = attrs.field(factory=list)
    ehlo_names: list[str] = attrs.field(factory=list)

    @property
    def lock(self) -> threading.Lock:
        """The lock of every list (the kit's)."""
        return self.kit.lock

    @property
    def raw(self) -> bytes:
        """Every byte the clients sent (after TLS, the decrypted bytes)."""
        with self.lock:
            return bytes(self.kit.transcript)

    @property
    def auth_logins(self) -> list[bytes]:
        """The login name of every PLAIN/LOGIN attempt, in order."""
        with self.lock:
            return [login.username.encode() for login in self.kit.logins]

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
        #: what the kit's protocol classes share (no rules: the refusals are this handler's)
        self.state = ServerState(
            recording=recorder.kit, script=Script(), lmtp=lmtp, users={}, tokens={}, extensions={}
        )
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


class RecordingSMTP(ScriptedSMTP):
    """The kit's protocol (BDAT included) recording what only the suite asks about, plus EXPN."""

    def __init__(self, handler: RecordingHandler, **kwargs: typing.Any) -> None:
        super().__init__(handler, **kwargs)
        self.recorder = handler.recorder
        self._smtp_methods = {
            name: self._with_argument(name, m) for name, m in self._smtp_methods.items()
        }

    def _with_argument(
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


class RecordingLMTP(RecordingSMTP, ScriptedLMTP):
    """The same, speaking LMTP."""


def _protocol_for(handler: RecordingHandler, lmtp: bool) -> Callable[..., SMTP]:
    cls = RecordingLMTP if lmtp else RecordingSMTP

    def make(state: ServerState, *, probe: bool = False, **kwargs: typing.Any) -> SMTP:
        if probe:  # the controller's start-up connection: plain aiosmtpd, never recorded
            return make_protocol(state, probe=True, **kwargs)
        return cls(handler, **kwargs)

    return make


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
        handler.state.users.update(users)
        kwargs["authenticator"] = authenticator(handler.state)
        kwargs["auth_require_tls"] = auth_require_tls
    controller, port = start_controller(
        handler.state,
        host=host,
        unix_path=unix_path,
        protocol=_protocol_for(handler, lmtp),
        **kwargs,
    )
    return SmtpdServer(host, port, unix_path, recorder, handler, controller)
