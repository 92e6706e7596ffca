"""The demo's in-process SMTP server: aiosmtpd on loopback with STARTTLS, AUTH, PIPELINING and a
refusal.

Layer: L8 command line (private). aiosmtpd is an optional dependency (``mailsdk[demo]``).
"""

from __future__ import annotations

import logging
import socket
import ssl
import typing

import attrs

from mailsdk.errors import ConfigurationError

__all__ = ["DEMO_PASSWORD", "DEMO_USER", "DemoServer", "REFUSED_RECIPIENT"]

DEMO_USER: typing.Final = "demo"
DEMO_PASSWORD: typing.Final = "demo-password"  # noqa: S105 - a throw-away loopback demo credential
REFUSED_RECIPIENT: typing.Final = "nobody@example.net"


@attrs.define
class Received:
    """One message the demo server accepted."""

    sender: str
    recipients: list[str]
    size: int


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DemoServer:
    """aiosmtpd in a background thread. Use as a context manager."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        try:
            from aiosmtpd.controller import Controller
            from aiosmtpd.smtp import AuthResult, LoginPassword
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigurationError(
                "the demo needs aiosmtpd: pip install 'mailsdk[demo]'"
            ) from exc
        self.received: list[Received] = []
        received = self.received

        class Handler:
            async def handle_EHLO(
                self,
                server: object,
                session: typing.Any,
                envelope: object,
                hostname: str,
                responses: list[str],
            ) -> list[str]:
                # aiosmtpd reads pipelined commands in order and answers each in turn, so it
                # does support RFC 2920; it just does not say so. The demo claims pipelining.
                session.host_name = hostname
                return [*responses[:-1], "250-PIPELINING", responses[-1]]

            async def handle_RCPT(
                self,
                server: object,
                session: object,
                envelope: typing.Any,
                address: str,
                rcpt_options: list[str],
            ) -> str:
                if address.lower() == REFUSED_RECIPIENT:
                    return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
                envelope.rcpt_tos.append(address)
                return "250 2.1.5 OK"

            async def handle_DATA(
                self, server: object, session: object, envelope: typing.Any
            ) -> str:
                content = envelope.original_content or b""
                received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), len(content)))
                return f"250 2.0.0 OK: queued as DEMO{len(received):04d}"

        def authenticator(
            server: object, session: object, envelope: object, mechanism: str, auth_data: object
        ) -> AuthResult:
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login == DEMO_USER.encode()
                and auth_data.password == DEMO_PASSWORD.encode()
            )
            return AuthResult(success=ok)

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        self.port = _free_port()
        self._controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            tls_context=context,
            require_starttls=True,
            authenticator=authenticator,
            auth_require_tls=True,
            server_hostname="localhost",
            enable_SMTPUTF8=True,
            decode_data=False,
            ident="mailsdk demo server",
        )

    def __enter__(self) -> DemoServer:
        # aiosmtpd 1.4 logs a warning about its own deprecated Session.login_data on every AUTH;
        # the demo's report is the output, so keep the server's log to errors.
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
