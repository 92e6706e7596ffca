"""The aiosmtpd protocol and handler behind :class:`mailsdk.testing.MailServer`.

Layer: L7 (``mailsdk.testing``). Imports aiosmtpd (the ``testing`` extra) and the kit's own
records and rules; runs on the aiosmtpd controller's event-loop thread.

aiosmtpd does the SMTP/LMTP work (parsing, STARTTLS, AUTH PLAIN/LOGIN, DATA with dot
un-stuffing). This module adds what a test kit needs on top: every command goes through the
:class:`~mailsdk.testing.rules.Script` first (refuse, delay, close, drop, stall), ``BDAT``
(RFC 3030, which aiosmtpd lacks), XOAUTH2/OAUTHBEARER with given tokens, the extension list
as configured, and a recording of everything.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import re
import typing
from collections.abc import Awaitable, Callable

import attrs
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from mailsdk.testing.records import Command, Login, ReceivedMessage, Recording
from mailsdk.testing.rules import Rule, Script

__all__ = ["ScriptedLMTP", "ScriptedSMTP", "ServerState", "authenticator", "make_protocol"]

_OK_DATA: typing.Final = "250 2.0.0 OK: queued as {qid}"
_GO_AHEAD: typing.Final = "354 End data with <CR><LF>.<CR><LF>"
_BDAT_ARG: typing.Final = re.compile(r"(\d+)(?:\s+(LAST))?\s*", re.IGNORECASE)
_OAUTH_USER: typing.Final = re.compile(r"(?:^|\x01)user=([^\x01]*)")
_OAUTH_AUTHZID: typing.Final = re.compile(r"^n,a=([^,]*),")
_OAUTH_BEARER: typing.Final = re.compile(r"\x01auth=Bearer ([^\x01]*)")
#: RFC 7628 §3.2.2's error challenge, as Gmail and Exchange send it.
_OAUTH_ERROR: typing.Final = b'{"status":"401","schemes":"bearer","scope":"https://mail.test/"}'


@attrs.define
class ServerState:
    """What the protocol objects of one server share (read by the test through MailServer)."""

    recording: Recording
    script: Script
    lmtp: bool
    users: dict[str, str]
    tokens: dict[str, str]
    extensions: dict[str, bool]
    queue_ids: int = 0

    def next_session(self) -> int:
        with self.recording.lock:
            self.recording.sessions += 1
            return self.recording.sessions

    def next_queue_id(self) -> str:
        with self.recording.lock:
            self.queue_ids += 1
            return f"Q{self.queue_ids:05d}"


def authenticator(state: ServerState) -> Callable[..., AuthResult]:
    """aiosmtpd's authenticator for PLAIN and LOGIN: the configured users, recorded."""

    def check(
        server: object, session: object, envelope: object, mechanism: str, auth_data: object
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        expected = state.users.get(login)
        ok = expected is not None and auth_data.password == expected.encode("utf-8")
        with state.recording.lock:
            state.recording.logins.append(Login(mechanism, login, ok))
        return AuthResult(success=ok, handled=False)

    return check


class Handler:
    """aiosmtpd handler: the extension list, envelope bookkeeping, the end-of-data reply,
    OAuth mechanisms (``auth_*`` methods are picked up by aiosmtpd)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    async def handle_EHLO(
        self,
        server: SMTP,
        session: typing.Any,
        envelope: typing.Any,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        ext = self.state.extensions
        lines = [line for line in responses[:-1] if _keep(line, ext)]
        extra = [f"250-{kw}" for kw in ("PIPELINING", "CHUNKING") if ext.get(kw)]
        return [*lines, *extra, "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_MAIL(
        self,
        server: SMTP,
        session: typing.Any,
        envelope: typing.Any,
        address: str,
        options: list[str],
    ) -> str:
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
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: typing.Any, envelope: typing.Any) -> str:
        protocol = typing.cast("ScriptedSMTP", server)
        rcpts = tuple(envelope.rcpt_tos)
        replies: list[str] = []
        confirmed: list[str] = []
        drop = False
        close = False
        qid = self.state.next_queue_id()
        for rcpt in rcpts if self.state.lmtp else (None,):
            rule = self.state.script.match("END-OF-DATA", rcpt)
            if rule is not None and rule.delay:
                await asyncio.sleep(rule.delay)
            if rule is not None and rule.reply is None and rule.close:
                drop = True
                continue
            close = close or bool(rule is not None and rule.close)
            reply = rule.reply if rule is not None and rule.reply is not None else None
            if reply is None:
                reply = (
                    f"250 2.1.5 <{rcpt}> delivered as {qid}" if rcpt else _OK_DATA.format(qid=qid)
                )
            replies.append(reply)
            if reply.startswith("2"):
                confirmed.extend([rcpt] if rcpt else rcpts)
        message = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            mail_options=tuple(envelope.mail_options),
            rcpt_tos=rcpts,
            rcpt_options=tuple(tuple(o) for o in envelope.rcpt_options),
            data=bytes(envelope.original_content or b""),
            confirmed=() if drop else tuple(confirmed),
            session=protocol.session_number,
        )
        with self.state.recording.lock:
            self.state.recording.received.append(message)
        if drop:
            protocol.drop_next_reply = True
        elif close:
            protocol.close_after_reply = True
        return "\r\n".join(replies) or _OK_DATA.format(qid=qid)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._oauth(server, args, "XOAUTH2")

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._oauth(server, args, "OAUTHBEARER")

    async def _oauth(self, server: SMTP, args: list[str], mechanism: str) -> AuthResult:
        if len(args) > 1:
            try:
                raw = base64.b64decode(args[1], validate=True)
            except ValueError:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        else:
            answer = await server.challenge_auth("")
            if not isinstance(answer, bytes):
                return AuthResult(success=False, handled=True)
            raw = answer
        text = raw.decode("utf-8", "replace")
        user = _OAUTH_USER.search(text) or _OAUTH_AUTHZID.search(text)
        token = _OAUTH_BEARER.search(text)
        login = user.group(1) if user else ""
        ok = token is not None and self.state.tokens.get(login) == token.group(1)
        with self.state.recording.lock:
            self.state.recording.logins.append(Login(mechanism, login, ok))
        if ok:
            return AuthResult(success=True, auth_data=login)
        # RFC 7628 §3.2.3: the error challenge, the client's dummy answer, then the failure.
        await server.challenge_auth(_OAUTH_ERROR)
        await server.push("535 5.7.8 Authentication credentials invalid")
        return AuthResult(success=False, handled=True)


def _keep(line: str, extensions: dict[str, bool]) -> bool:
    """Whether an EHLO line of aiosmtpd's stays: 8BITMIME as configured, and no ``AUTH``
    line without mechanisms (aiosmtpd writes one when every mechanism is excluded)."""
    keyword, _space, params = line[4:].partition(" ")
    if keyword.upper() == "8BITMIME":
        return extensions.get("8BITMIME", True)
    if keyword.upper() == "AUTH":
        return bool(params.strip())
    return True


class ScriptedSMTP(SMTP):
    """aiosmtpd's protocol with the script applied to every command, recording, and BDAT."""

    def __init__(self, handler: Handler, **kwargs: typing.Any) -> None:
        super().__init__(handler, **kwargs)
        self.state = handler.state
        self.session_number = 0
        self.drop_next_reply = False
        self.close_after_reply = False
        self._greeted = False
        self._bdat: list[bytes] = []
        # RFC 3030 §2: after a refused chunk the transaction has failed; chunks already in the
        # pipeline behind it are read and discarded (never delivered) until RSET or MAIL.
        self._bdat_failed = False
        self._smtp_methods = {
            name: self._scripted(name, m) for name, m in self._smtp_methods.items()
        }

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.session_number == 0:
            self.session_number = self.state.next_session()
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        with self.state.recording.lock:
            self.state.recording.transcript += data
        super().data_received(data)

    async def push(self, status: typing.AnyStr) -> None:
        if not self._greeted:
            self._greeted = True
            rule = self.state.script.match("GREETING")
            if rule is not None:
                await self._apply_greeting(rule, status)
                return
        if self.drop_next_reply:
            self.drop_next_reply = False
            self._abort()
            return
        await super().push(status)
        if self.close_after_reply:
            self.close_after_reply = False
            self._close()

    async def _apply_greeting(self, rule: Rule, status: typing.AnyStr) -> None:
        if rule.delay:
            await asyncio.sleep(rule.delay)
        if rule.reply is None and rule.close:
            self._abort()
            return
        if rule.reply is not None:
            await super().push(rule.reply)
        else:
            await super().push(status)
        if rule.close:
            self._close()
        elif rule.stall:
            await self._stall()

    def _scripted(
        self, verb: str, method: Callable[[str | None], Awaitable[None]]
    ) -> Callable[..., typing.Any]:
        @functools.wraps(method)
        async def run(arg: str | None) -> None:
            shown = arg.split(" ", 1)[0] if verb == "AUTH" and arg else arg  # never a secret
            with self.state.recording.lock:
                self.state.recording.commands.append(Command(verb, shown, self.session_number))
            rule = self.state.script.match(verb, arg)
            if rule is None:
                await method(arg)
                return
            if rule.delay:
                await asyncio.sleep(rule.delay)
            if rule.reply is not None:
                if verb == "BDAT":
                    # RFC 3030 §2: a refused chunk is still read, or its bytes would be
                    # taken for commands; the transaction's earlier chunks go with it.
                    await self._discard_chunk(arg)
                    self._bdat_failed = rule.reply[:1] in ("4", "5")
                await super(ScriptedSMTP, self).push(rule.reply)
            elif rule.close:
                self._abort()
                return
            elif rule.stall and verb == "DATA":
                await super(ScriptedSMTP, self).push(_GO_AHEAD)
            else:
                await method(arg)
            if rule.close:
                self._close()
            elif rule.stall:
                await self._stall()

        return run

    def _body_rule(self) -> Rule | None:
        """The ``BODY`` rule, consulted only when the content will really be read."""
        envelope = self.envelope
        if envelope is None or not envelope.rcpt_tos or self.session is None:
            return None
        return self.state.script.match("BODY")

    async def _discard_chunk(self, arg: str | None) -> None:
        self._bdat = []
        parsed = _BDAT_ARG.fullmatch(arg or "")
        size = int(parsed.group(1)) if parsed is not None else 0
        while size:
            size -= len(await self._reader.readexactly(min(size, 1 << 16)))

    async def smtp_MAIL(self, arg: str) -> None:
        self._bdat = []  # chunks of an abandoned transaction never join the next message
        self._bdat_failed = False
        await super().smtp_MAIL(arg)

    async def smtp_RSET(self, arg: str) -> None:
        self._bdat = []
        self._bdat_failed = False
        await super().smtp_RSET(arg)

    async def smtp_DATA(self, arg: str) -> None:
        rule = self._body_rule() if not arg else None
        if rule is None:
            await super().smtp_DATA(arg)
            return
        await super().push(_GO_AHEAD)
        await self._body_fault(rule)

    async def smtp_BDAT(self, arg: str | None) -> None:
        parsed = _BDAT_ARG.fullmatch(arg or "")
        if parsed is None:
            await super().push("501 5.5.4 Syntax: BDAT <size> [LAST]")
            return
        size, last = int(parsed.group(1)), parsed.group(2) is not None
        if self._bdat_failed:
            await self._discard_chunk(arg)
            await super().push("554 5.5.0 Error: an earlier chunk of this transaction was refused")
            return
        if not self._bdat:
            rule = self._body_rule()
            if rule is not None:
                await self._body_fault(rule)
                return
        limit = self.data_size_limit
        if limit and sum(map(len, self._bdat)) + size > limit:
            # RFC 3030 §2: the chunk is read (and dropped) even when it is refused.
            await self._discard_chunk(arg)
            self._bdat_failed = True
            await super().push("552 5.3.4 Message size exceeds fixed maximum message size")
            return
        chunk = await self._reader.readexactly(size)
        if self.envelope is None or not self.envelope.rcpt_tos:
            self._bdat = []
            await super().push("503 5.5.1 Error: need RCPT command")
            return
        self._bdat.append(chunk)
        if not last:
            await super().push(f"250 2.0.0 {size} octets received")
            return
        self.envelope.original_content = self.envelope.content = b"".join(self._bdat)
        self._bdat = []
        status = await self._call_handler_hook("DATA")  # pyright: ignore[reportUnknownMemberType]
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(status)

    async def _body_fault(self, rule: Rule) -> None:
        if rule.delay:
            await asyncio.sleep(rule.delay)
        if rule.stall:
            await self._stall()
            return
        # A drop before the final dot: wait for the content to start, then go.
        await self._reader.read(1)
        self._abort()

    async def _stall(self) -> None:
        """Stop reading from the client; wait until the connection ends."""
        transport = self.transport
        if transport is not None and hasattr(transport, "pause_reading"):
            typing.cast("asyncio.ReadTransport", transport).pause_reading()
        await asyncio.get_running_loop().create_future()

    def _abort(self) -> None:
        if self.transport is not None:
            typing.cast("asyncio.WriteTransport", self.transport).abort()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class ScriptedLMTP(ScriptedSMTP, LMTP):
    """The same, speaking LMTP (LHLO; one reply per recipient after the data)."""


class _Probe(SMTP):
    """The controller's start-up connection: plain aiosmtpd, outside the script and records."""


def make_protocol(state: ServerState, *, probe: bool = False, **kwargs: typing.Any) -> SMTP:
    """A protocol object for one connection (``probe``: the server's own start-up check,
    which plain aiosmtpd serves: no rules, no recording)."""
    if probe:
        return _Probe(Handler(state), **kwargs)
    cls = ScriptedLMTP if state.lmtp else ScriptedSMTP
    return cls(Handler(state), **kwargs)
