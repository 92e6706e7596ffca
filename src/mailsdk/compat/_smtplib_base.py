"""The socket-independent part of ``mailsdk.compat.smtplib.SMTP``: the wire and the commands.

Layer: L7 (compat, private). May import ``mailsdk.protocol``, L0, the sibling private compat
modules and the standard library (``smtplib`` for its exception classes only); must never import
``mailsdk.api``. Nothing here looks up the ``socket`` module: connecting lives in
``mailsdk.compat.smtplib`` so that replacing its module-level ``socket`` (as CPython's tests do
with ``test.mock_socket``) reaches every connection.

Every command goes through :meth:`SMTPBase.putcmd` and every reply through
:meth:`SMTPBase.getreply`, as in smtplib, so subclasses overriding them keep working. Validation
and serialisation come from mailsdk (``_smtplib_text``), replies are assembled by
``ReplyParser`` with bounds and a total deadline (``_smtplib_io``).
"""

from __future__ import annotations

import contextlib
import datetime
import smtplib as _std
import sys
import time
import typing
from collections.abc import Sequence

from mailsdk.compat import _smtplib_text as _text
from mailsdk.compat._smtplib_io import ReplyAssembler, ReplyTooLongError, SocketLineReader
from mailsdk.protocol import Dialect

if typing.TYPE_CHECKING:
    import socket

__all__ = ["CRLF", "MAXCHALLENGE", "MAXLINE", "Reply", "SMTPBase"]

CRLF: typing.Final = "\r\n"
#: smtplib's ``_MAXLINE``: the longest reply line, line end included.
MAXLINE: typing.Final = 8192
#: smtplib's ``_MAXCHALLENGE``: most AUTH challenges answered before giving up.
MAXCHALLENGE: typing.Final = 5
#: smtplib's reply type: ``(code, message)``.
Reply: typing.TypeAlias = tuple[int, bytes]


class SMTPBase:
    """Connection state, the wire (``send``/``putcmd``/``getreply``) and the single commands.

    Subclasses provide ``connect`` (see ``mailsdk.compat.smtplib.SMTP``).
    """

    debuglevel = 0
    sock: socket.socket | None = None
    file: typing.Any = None
    helo_resp: bytes | None = None
    ehlo_msg = "ehlo"
    ehlo_resp: bytes | None = None
    does_esmtp = False
    _dialect = Dialect.SMTP
    #: An AUTH exchange sent by hand (``docmd("AUTH", ...)``) is in progress: redact it too.
    _sasl_wire = False
    local_hostname: str

    def _init_state(self, host: str, timeout: object, source_address: object) -> None:
        self._host = host
        self.timeout: typing.Any = timeout
        self.esmtp_features: dict[str, str] = {}
        self.command_encoding = "ascii"
        self.source_address: typing.Any = source_address
        self._auth_challenge_count = 0
        self._sasl_active = False
        self._accepted: list[str] = []
        #: LMTP only: recipient -> (code, message) of the last DATA's per-recipient replies.
        self.lmtp_replies: dict[str, Reply] = {}
        self._assembler = ReplyAssembler()
        self.user: str | None = None
        self.password: str | None = None

    def _max_line(self) -> int:
        """The reply line limit (``smtplib._MAXLINE``); the public module makes it patchable."""
        return MAXLINE

    def _max_challenge(self) -> int:
        """The AUTH round cap (``smtplib._MAXCHALLENGE``)."""
        return MAXCHALLENGE

    def __enter__(self) -> typing.Self:
        return self

    def __exit__(self, *args: object) -> None:
        try:
            code, message = self.docmd("QUIT")
            if code != 221:
                raise _std.SMTPResponseException(code, message)
        except _std.SMTPServerDisconnected:
            pass
        finally:
            self.close()

    # -- connection and wire ----------------------------------------------------------------

    def set_debuglevel(self, debuglevel: int) -> None:
        """Print the conversation on stderr: 1 for messages, 2 to add timestamps."""
        self.debuglevel = debuglevel

    def _print_debug(self, *args: object) -> None:
        if self.debuglevel > 1:
            print(datetime.datetime.now().time(), *args, file=sys.stderr)
        else:
            print(*args, file=sys.stderr)

    def send(self, s: str | bytes) -> None:
        """Send raw data (``str`` is encoded with ``command_encoding``).

        Raises:
            SMTPServerDisconnected: not connected, or the send failed (the socket is closed).
        """
        if self.debuglevel > 0:
            self._print_debug("send:", repr(self._loggable(s)))
        if self.sock:
            data = s.encode(self.command_encoding) if isinstance(s, str) else s
            sys.audit("smtplib.send", self, data)
            try:
                self.sock.sendall(data)
            except OSError:
                self.close()
                raise _std.SMTPServerDisconnected("Server not connected") from None
        else:
            raise _std.SMTPServerDisconnected("please run connect() first")

    def _loggable(self, s: str | bytes) -> str | bytes:
        """What debug output shows: during AUTH every payload is replaced by ``***``."""
        if not (self._sasl_active or self._sasl_wire):
            return s
        words = (s.decode("ascii", "replace") if isinstance(s, bytes) else s).split()
        if [w.upper() for w in words[:1]] == ["AUTH"]:
            return " ".join([*words[:2], "***"][: max(len(words), 2)]) + CRLF
        return "***" + CRLF

    def putcmd(self, cmd: str, args: str = "") -> None:
        """Send one command line.

        Raises:
            ValueError: the line contains CR or LF (command injection) or another control
                character (``mailsdk.errors.InvalidInputError``, a ``ValueError``).
            UnicodeEncodeError: non-ASCII text while SMTPUTF8 is not in use.
        """
        line = cmd if args == "" else f"{cmd} {args}"
        verb = line.split(None, 1)[0].upper() if line.strip() else ""
        if verb == "AUTH":
            # RFC 4954: everything up to the final (non-334) reply is part of the exchange.
            self._sasl_wire = True
        secret = self._sasl_active or self._sasl_wire
        self.send(_text.command_line(line, self.command_encoding, secret=secret))

    def getreply(self) -> Reply:
        """Read one reply: ``(code, message)``; code ``-1`` when it is not a number.

        Raises:
            SMTPServerDisconnected: the connection closed, failed or timed out.
            SMTPResponseException: (500) a line longer than ``_MAXLINE`` or an oversized reply.
        """
        if self.sock is None:
            raise _std.SMTPServerDisconnected("please run connect() first")
        if self.file is None:
            self.file = SocketLineReader(self.sock)
        timeout = self.sock.gettimeout() if hasattr(self.sock, "gettimeout") else None
        deadline = time.monotonic() + timeout if timeout else None
        self._assembler.reset()
        while True:
            try:
                if isinstance(self.file, SocketLineReader):
                    line = self.file.readline(self._max_line() + 1, deadline)
                else:
                    line = self.file.readline(self._max_line() + 1)
            except OSError as exc:
                self.close()
                raise _std.SMTPServerDisconnected(f"Connection unexpectedly closed: {exc}") from exc
            if not line:
                self.close()
                raise _std.SMTPServerDisconnected("Connection unexpectedly closed")
            if self.debuglevel > 0:
                self._print_debug("reply:", repr(line))
            if len(line) > self._max_line():
                self.close()
                raise _std.SMTPResponseException(500, "Line too long.")
            try:
                result = self._assembler.add(line)
            except ReplyTooLongError:
                self.close()
                raise _std.SMTPResponseException(500, "Reply too long.") from None
            if result is not None:
                break
        code, msg = result
        if code != 334:
            self._sasl_wire = False  # RFC 4954 §4: any other reply ends the AUTH exchange
        if self.debuglevel > 0:
            self._print_debug(f"reply: retcode ({code}); Msg: {msg!a}")
        return code, msg

    def docmd(self, cmd: str, args: str = "") -> Reply:
        """Send a command and return its reply."""
        self.putcmd(cmd, args)
        return self.getreply()

    # -- the SMTP commands ------------------------------------------------------------------

    def helo(self, name: str = "") -> Reply:
        """HELO (RFC 5321 §4.1.1.1) with ``name`` or ``local_hostname``."""
        self.putcmd("helo", name or self.local_hostname)
        code, msg = self.getreply()
        self.helo_resp = msg
        return code, msg

    def ehlo(self, name: str = "") -> Reply:
        """EHLO (LHLO for LMTP); on 250 fills ``esmtp_features`` via mailsdk's EHLO parser.

        Raises:
            SMTPServerDisconnected: the server closed the connection instead of answering.
        """
        self.esmtp_features = {}
        self.putcmd(self.ehlo_msg, name or self.local_hostname)
        code, msg = self.getreply()
        if code == -1 and len(msg) == 0:
            self.close()
            raise _std.SMTPServerDisconnected("Server not connected")
        self.ehlo_resp = msg
        if code != 250:
            return code, msg
        self.does_esmtp = True
        self.esmtp_features = _text.esmtp_features(msg)
        return code, msg

    def has_extn(self, opt: str) -> bool:
        """Whether the server advertised the extension ``opt`` (case-insensitive)."""
        return opt.lower() in self.esmtp_features

    def help(self, args: str = "") -> bytes:
        """HELP; returns the reply text only."""
        self.putcmd("help", args)
        return self.getreply()[1]

    def rset(self) -> Reply:
        """RSET: abort the transaction (and stop using UTF-8 for commands)."""
        self.command_encoding = "ascii"
        self._accepted = []
        return self.docmd("rset")

    def _rset(self) -> None:
        with contextlib.suppress(_std.SMTPServerDisconnected):
            self.rset()

    def noop(self) -> Reply:
        """NOOP."""
        return self.docmd("noop")

    def mail(self, sender: str, options: Sequence[str] = ()) -> Reply:
        """MAIL FROM with ESMTP ``options`` (sent only after a successful EHLO).

        Raises:
            SMTPNotSupportedError: ``SMTPUTF8`` requested but not advertised.
        """
        optionlist = ""
        if options and self.does_esmtp:
            if any(o.lower() == "smtputf8" for o in options):
                if not self.has_extn("smtputf8"):
                    raise _std.SMTPNotSupportedError("SMTPUTF8 not supported by server")
                self.command_encoding = "utf-8"
            optionlist = " " + " ".join(options)
        self._accepted = []
        self.putcmd("mail", f"from:{_text.quoteaddr(_text.checked_address(sender))}{optionlist}")
        return self.getreply()

    def rcpt(self, recip: str, options: Sequence[str] = ()) -> Reply:
        """RCPT TO with ESMTP ``options`` (sent only after a successful EHLO)."""
        optionlist = " " + " ".join(options) if options and self.does_esmtp else ""
        self.putcmd("rcpt", f"to:{_text.quoteaddr(_text.checked_address(recip))}{optionlist}")
        code, msg = self.getreply()
        if code in (250, 251):
            self._accepted.append(recip)
        return code, msg

    def data(self, msg: str | bytes) -> Reply:
        """DATA and the message: canonical CRLF, dot-stuffed, terminated (RFC 5321 §4.5.2).

        For LMTP one reply per accepted recipient is read (RFC 2033 §4.2) and kept in
        ``lmtp_replies``; the first failure (or the last success) is returned.

        Raises:
            SMTPDataError: DATA was not answered with 354.
        """
        self.putcmd("data")
        code, repl = self.getreply()
        if self.debuglevel > 0:
            self._print_debug("data:", (code, repl))
        if code != 354:
            raise _std.SMTPDataError(code, repl)
        self.send(_text.data_payload(msg))
        accepted, self._accepted = self._accepted, []
        self.lmtp_replies = {}
        if not (self._dialect.replies_per_recipient and accepted):
            code, msg_ = self.getreply()
            if self.debuglevel > 0:
                self._print_debug("data:", (code, msg_))
            return code, msg_
        replies = [(rcpt, self.getreply()) for rcpt in accepted]
        self.lmtp_replies = dict(replies)
        if self.debuglevel > 0:
            self._print_debug("data:", replies)
        failures = [reply for _rcpt, reply in replies if reply[0] != 250]
        return failures[0] if failures else replies[-1][1]

    def verify(self, address: str) -> Reply:
        """VRFY with the bare address."""
        self.putcmd("vrfy", _text.addr_only(_text.checked_address(address)))
        return self.getreply()

    vrfy = verify

    def expn(self, address: str) -> Reply:
        """EXPN with the bare address."""
        self.putcmd("expn", _text.addr_only(_text.checked_address(address)))
        return self.getreply()

    def ehlo_or_helo_if_needed(self) -> None:
        """EHLO, then HELO if EHLO failed, unless one already succeeded this session.

        Raises:
            SMTPHeloError: HELO was refused too.
        """
        if self.helo_resp is None and self.ehlo_resp is None and not 200 <= self.ehlo()[0] <= 299:
            code, resp = self.helo()
            if not 200 <= code <= 299:
                raise _std.SMTPHeloError(code, resp)

    def close(self) -> None:
        """Close the connection (no QUIT)."""
        try:
            file, self.file = self.file, None
            if file:
                file.close()
        finally:
            sock, self.sock = self.sock, None
            self._accepted = []
            if sock:
                sock.close()

    def quit(self) -> Reply:
        """QUIT, forget the session's EHLO/HELO state, close."""
        res = self.docmd("quit")
        self.ehlo_resp = self.helo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        self.close()
        return res
