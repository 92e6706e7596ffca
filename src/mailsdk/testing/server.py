"""MailServer: an in-process SMTP/LMTP server for testing code that sends mail with mailsdk.

Layer: L7 (``mailsdk.testing``). May import everything below it (the builder, the clients);
never api, compat or cli. Needs the ``testing`` extra (aiosmtpd, trustme).

The server runs aiosmtpd on its own thread and event loop, on loopback (or a unix socket), so
blocking and asyncio clients both talk to it from the test's thread. Everything it receives is
recorded (:attr:`MailServer.received`, :attr:`MailServer.commands`...), and its behaviour can
be scripted before or during a test (:meth:`MailServer.refuse_recipient`,
:meth:`MailServer.transient`, :meth:`MailServer.drop_after_dot`...).
"""

from __future__ import annotations

import contextlib
import os
import ssl
import typing
from collections.abc import Generator, Mapping

from mailsdk._secret import Secret
from mailsdk.auth.tokens import StaticTokenProvider
from mailsdk.builder import ClientBuilder
from mailsdk.client import AsyncClient, Client
from mailsdk.errors import ConfigurationError
from mailsdk.testing.records import Command, Login, ReceivedMessage, Recording
from mailsdk.testing.rules import Rule, Script
from mailsdk.transport import TlsSettings

try:
    import trustme
    from aiosmtpd.controller import Controller, UnixSocketController

    from mailsdk.testing._aiosmtpd import ServerState, authenticator
    from mailsdk.testing._listen import start_controller
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "mailsdk.testing needs the 'testing' extra: pip install 'mailsdk[testing]' "
        f"(aiosmtpd, trustme); missing: {exc.name}"
    ) from exc

__all__ = ["MailServer", "serve"]

TlsOption = typing.Literal["none", "starttls", "implicit"]
#: Deadlines of the clients the helpers build: short, so a test that hangs says so quickly,
#: long enough for a loaded CI machine.
CLIENT_TIMEOUT: typing.Final = 10.0


class MailServer:
    """An SMTP (or LMTP) server on loopback that records what it receives and does as scripted.

    Use it as a context manager (or :func:`serve`), or through the opt-in pytest plugin
    (``pytest_plugins = ["mailsdk.testing.pytest_plugin"]``: fixtures ``mail_server`` and
    ``mail_server_factory``).

    Args:
        host: the loopback address to listen on (``"::1"`` for IPv6).
        unix_path: listen on this unix socket instead of TCP.
        lmtp: speak LMTP (RFC 2033): LHLO and one reply per recipient after the data.
        tls: ``"starttls"`` (offer STARTTLS), ``"implicit"`` (TLS from the first byte) or
            ``"none"``; the certificate comes from a throwaway CA (:attr:`ca`) that the
            clients built by :meth:`client_builder` trust.
        require_tls: refuse mail commands before STARTTLS (530).
        users: accept AUTH PLAIN and LOGIN with these user → password pairs.
        tokens: accept AUTH XOAUTH2 and OAUTHBEARER with these user → access token pairs.
        pipelining, chunking, smtputf8, eightbitmime: advertise PIPELINING, CHUNKING (and
            accept BDAT), SMTPUTF8, 8BITMIME.
        size: the SIZE limit to advertise and enforce; ``None`` advertises no SIZE.
        hostname: the name in the greeting and EHLO reply.

    Raises:
        ConfigurationError: options that contradict each other.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        unix_path: str | os.PathLike[str] | None = None,
        lmtp: bool = False,
        tls: TlsOption = "none",
        require_tls: bool = False,
        users: Mapping[str, str] | None = None,
        tokens: Mapping[str, str] | None = None,
        pipelining: bool = True,
        chunking: bool = False,
        smtputf8: bool = True,
        eightbitmime: bool = True,
        size: int | None = 33_554_432,
        hostname: str = "mx.test",
    ) -> None:
        if tls not in ("none", "starttls", "implicit"):
            raise ConfigurationError(f"tls must be 'none', 'starttls' or 'implicit', not {tls!r}")
        if require_tls and tls != "starttls":
            raise ConfigurationError("require_tls needs tls='starttls'")
        if unix_path is not None and tls == "implicit":
            raise ConfigurationError("implicit TLS on a unix socket is not supported")
        self.host = host
        self.path = os.fspath(unix_path) if unix_path is not None else None
        self.port = 0
        self.lmtp = lmtp
        self.tls: TlsOption = tls
        self.hostname = hostname
        self._require_tls = require_tls
        self._size = size
        self._smtputf8 = smtputf8
        self.recording = Recording()
        self.script = Script()
        self._state = ServerState(
            recording=self.recording,
            script=self.script,
            lmtp=lmtp,
            users=dict(users or {}),
            tokens=dict(tokens or {}),
            extensions={"PIPELINING": pipelining, "CHUNKING": chunking, "8BITMIME": eightbitmime},
        )
        #: The throwaway CA that issued the server's certificate (``None`` without TLS).
        self.ca: trustme.CA | None = trustme.CA() if tls != "none" else None
        self._controller: Controller | UnixSocketController | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> MailServer:
        """Start listening (idempotent); returns ``self``."""
        if self._controller is not None:
            return self
        self._controller, self.port = start_controller(
            self._state, host=self.host, unix_path=self.path, **self._smtp_options()
        )
        self.recording.clear()  # the controller's own start-up probe is no test's business
        return self

    def stop(self) -> None:
        """Stop the server (idempotent); the recording stays readable."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()
        if self.path is not None and os.path.exists(self.path):
            os.unlink(self.path)

    def __enter__(self) -> MailServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.path or f"{self.host}:{self.port}"
        return f"<MailServer {'LMTP' if self.lmtp else 'SMTP'} {where} tls={self.tls}>"

    def _smtp_options(self) -> dict[str, typing.Any]:
        options: dict[str, typing.Any] = {
            "server_hostname": self.hostname,
            "ident": "ESMTP mailsdk.testing",
            "enable_SMTPUTF8": self._smtputf8,
            "data_size_limit": self._size,
            "decode_data": False,
            "timeout": 60,
            "ready_timeout": 10.0,
            "auth_require_tls": self.tls != "none",
            "authenticator": authenticator(self._state),
        }
        excluded: list[str] = []
        if not self._state.users:
            excluded += ["PLAIN", "LOGIN"]
        if not self._state.tokens:
            excluded += ["XOAUTH2", "OAUTHBEARER"]
        options["auth_exclude_mechanism"] = excluded
        context = self._server_context()
        if self.tls == "starttls":
            options["tls_context"] = context
            options["require_starttls"] = self._require_tls
        elif self.tls == "implicit":
            options["ssl_context"] = context
        return options

    def _server_context(self) -> ssl.SSLContext | None:
        if self.ca is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("localhost", "127.0.0.1", "::1", self.hostname).configure_cert(context)  # pyright: ignore[reportUnknownMemberType]
        return context

    # -- what it received ---------------------------------------------------------------------

    @property
    def received(self) -> list[ReceivedMessage]:
        """Every message read to its end, delivered or not (see ``confirmed``)."""
        with self.recording.lock:
            return list(self.recording.received)

    @property
    def messages(self) -> list[ReceivedMessage]:
        """The messages the server confirmed for at least one recipient."""
        return [m for m in self.received if m.delivered]

    @property
    def commands(self) -> list[Command]:
        """Every command line read, in order."""
        with self.recording.lock:
            return list(self.recording.commands)

    @property
    def verbs(self) -> list[str]:
        """The verbs of :attr:`commands`."""
        return [c.verb for c in self.commands]

    @property
    def logins(self) -> list[Login]:
        """Every AUTH attempt."""
        with self.recording.lock:
            return list(self.recording.logins)

    @property
    def transcript(self) -> bytes:
        """All bytes the clients sent (decrypted after TLS), in order."""
        with self.recording.lock:
            return bytes(self.recording.transcript)

    @property
    def sessions(self) -> int:
        """How many connections the server accepted."""
        with self.recording.lock:
            return self.recording.sessions

    def reset(self) -> None:
        """Forget what was recorded and remove every rule."""
        self.recording.clear()
        self.script.clear()

    # -- scripting ----------------------------------------------------------------------------

    def add_rule(self, rule: Rule) -> Rule:
        """Add any :class:`~mailsdk.testing.rules.Rule` (earlier rules win)."""
        return self.script.add(rule)

    def refuse(
        self, command: str, reply: str, *, argument: str | None = None, times: int | None = None
    ) -> Rule:
        """Answer ``command`` (optionally only for one address) with ``reply`` instead."""
        return self.add_rule(Rule(command, reply, argument=argument, times=times))

    def refuse_recipient(
        self, address: str, reply: str | None = None, *, times: int | None = None
    ) -> Rule:
        """Refuse ``RCPT TO:<address>`` (default ``550 5.1.1 ... User unknown``)."""
        text = reply or f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        return self.refuse("RCPT", text, argument=address, times=times)

    def refuse_sender(self, address: str, reply: str | None = None) -> Rule:
        """Refuse ``MAIL FROM:<address>`` (default ``553 5.7.1``)."""
        return self.refuse(
            "MAIL", reply or f"553 5.7.1 <{address}>: Sender address rejected", argument=address
        )

    def refuse_delivery(
        self, reply: str = "554 5.6.0 Message rejected", *, recipient: str | None = None
    ) -> Rule:
        """Refuse the message after its final dot (LMTP: only ``recipient``'s reply).

        Raises:
            ConfigurationError: ``recipient`` on an SMTP server (one reply covers every
                recipient there, so the rule would never fire).
        """
        if recipient is not None and not self.lmtp:
            raise ConfigurationError(
                "refuse_delivery(recipient=...) needs an LMTP server (lmtp=True): SMTP has one "
                "reply after the data for all recipients"
            )
        return self.refuse("END-OF-DATA", reply, argument=recipient)

    def transient(
        self,
        command: str,
        times: int = 1,
        reply: str = "451 4.3.0 Temporary failure, try again later",
    ) -> Rule:
        """A burst of ``times`` 4xx replies to ``command``, then normal service."""
        return self.refuse(command, reply, times=times)

    def shutdown_on(
        self, command: str, reply: str = "421 4.3.2 Service shutting down, closing channel"
    ) -> Rule:
        """Answer ``command`` with a 421 and close the connection (RFC 5321 §3.8)."""
        return self.add_rule(Rule(command, reply, close=True, times=1))

    def drop_on(self, command: str) -> Rule:
        """Close the connection when ``command`` arrives, without a reply."""
        return self.add_rule(Rule(command, close=True, times=1))

    def drop_before_dot(self) -> Rule:
        """Close the connection once the message content starts, before its final dot.

        The message is never recorded. Whether the client had already written its final dot
        into the socket when the drop happened depends on the message size and buffers: a
        small message may be written whole (the client then rightly reports an unknown
        outcome), a large one fails during the write.
        """
        return self.add_rule(Rule("BODY", close=True, times=1))

    def drop_after_dot(self) -> Rule:
        """Read the whole message, then close without a reply (the outcome the client cannot
        know: it is recorded in :attr:`received` with nothing ``confirmed``)."""
        return self.add_rule(Rule("END-OF-DATA", close=True, times=1))

    def slow(self, command: str, seconds: float, *, times: int | None = None) -> Rule:
        """Wait ``seconds`` before handling ``command`` (also ``"GREETING"``, ``"END-OF-DATA"``)."""
        return self.add_rule(Rule(command, delay=seconds, times=times))

    def stall(self, command: str = "DATA") -> Rule:
        """After ``command`` (DATA: after the 354), stop reading from the client for good."""
        point = "BODY" if command.upper() == "DATA" else command
        return self.add_rule(Rule(point, stall=True, times=1))

    # -- clients ------------------------------------------------------------------------------

    def tls_settings(self) -> TlsSettings:
        """Client TLS settings that trust this server's throwaway CA."""
        if self.ca is None:
            return TlsSettings()
        return TlsSettings(ca_data=self.ca.cert_pem.bytes().decode("ascii"))

    def client_builder(
        self,
        *,
        username: str | None = None,
        password: str | Secret | None = None,
        token: str | Secret | None = None,
        timeout: float = CLIENT_TIMEOUT,
    ) -> ClientBuilder:
        """A :class:`~mailsdk.ClientBuilder` for this server: its address, its TLS mode with
        the CA trusted, LMTP when the server speaks it, short deadlines, ``client.test`` as
        the EHLO name, and credentials (a password or an OAuth token) when given.

        Raises:
            ConfigurationError: the server is not started, or both password and token.
        """
        if self._controller is None:
            raise ConfigurationError("start the MailServer before building a client for it")
        if password is not None and token is not None:
            raise ConfigurationError("give a password or a token, not both")
        if self.path is not None:
            builder = ClientBuilder.unix(self.path, lmtp=self.lmtp)
        else:
            builder = ClientBuilder.smtp(self.host, self.port).with_lmtp(self.lmtp)
            builder = builder.with_tls(self.tls, settings=self.tls_settings())
        builder = builder.with_timeouts(timeout).with_local_hostname("client.test")
        plaintext = self.tls == "none"
        if password is not None:
            builder = builder.with_credentials(username or "", password, allow_plaintext=plaintext)
        elif token is not None:
            provider = StaticTokenProvider(token, username=username)
            builder = builder.with_token_provider(
                username or "", provider, allow_plaintext=plaintext
            )
        return builder

    def client(self, **options: typing.Any) -> Client:
        """A blocking client for this server (options as for :meth:`client_builder`)."""
        return self.client_builder(**options).build()

    def async_client(self, **options: typing.Any) -> AsyncClient:
        """An asyncio client for this server (options as for :meth:`client_builder`)."""
        return self.client_builder(**options).build_async()


@contextlib.contextmanager
def serve(**options: typing.Any) -> Generator[MailServer, None, None]:
    """Run a :class:`MailServer` for the ``with`` block (any test runner)::

    with mailsdk.testing.serve(chunking=True) as server:
        with server.client().connect() as session:
            session.send_message(msg)
        assert server.messages[0].message["Subject"] == "hello"
    """
    with MailServer(**options) as server:
        yield server
