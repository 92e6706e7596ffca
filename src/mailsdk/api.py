"""One-call sending: :func:`send` and :func:`asend`.

Layer: L7 conveniences. May import everything below; never compat or cli.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailsdk._secret import Secret
from mailsdk._types import MessageSource
from mailsdk.builder import ClientBuilder
from mailsdk.errors import ConfigurationError
from mailsdk.flows import SendResult, TlsMode
from mailsdk.transport import TlsSettings

__all__ = ["asend", "send"]


def _builder(
    *,
    host: str | None,
    port: int | str | None,
    username: str | None,
    password: str | Secret | None,
    tls: TlsMode | str | None,
    tls_settings: TlsSettings | None,
    timeout: float | None,
) -> ClientBuilder:
    if host is None:
        raise ConfigurationError("give host= (or a ready builder=)")
    builder = ClientBuilder.smtp(host, port)
    if tls is not None:
        builder = builder.with_tls(tls)
    if tls_settings is not None:
        builder = builder.with_tls_settings(tls_settings)
    if (username is None) != (password is None):
        # Dropping half of the credentials would send unauthenticated without a word.
        raise ConfigurationError("give both username= and password=, or neither")
    if username is not None and password is not None:
        builder = builder.with_credentials(username, password)
    if timeout is not None:
        builder = builder.with_timeouts(timeout)
    return builder


def _chosen(builder: ClientBuilder | None, *details: object) -> ClientBuilder | None:
    """The ready builder, if given; connection details beside it would be silently ignored."""
    if builder is not None and any(d is not None for d in details):
        raise ConfigurationError(
            "give either builder= or connection details (host=, port=, username=, password=, "
            "tls=, tls_settings=, timeout=), not both: set them on the builder instead"
        )
    return builder


def send(
    message: MessageSource,
    *,
    host: str | None = None,
    port: int | str | None = None,
    username: str | None = None,
    password: str | Secret | None = None,
    tls: TlsMode | str | None = None,
    tls_settings: TlsSettings | None = None,
    timeout: float | None = None,
    sender: str | None = None,
    recipients: Sequence[str] | str | None = None,
    builder: ClientBuilder | None = None,
) -> SendResult:
    """Connect, send one message, QUIT.

    Either pass connection details (``host``, ``port``, credentials, TLS mode: STARTTLS
    required by default, implicit TLS on port 465) or a ready ``builder``.

    Raises:
        ConfigurationError: no host, half of the credentials, or both a ``builder`` and
            connection details.
        TransportError, ReplyError: and the other errors of :meth:`mailsdk.Session.send_message`.
    """
    b = _chosen(builder, host, port, username, password, tls, tls_settings, timeout) or _builder(
        host=host,
        port=port,
        username=username,
        password=password,
        tls=tls,
        tls_settings=tls_settings,
        timeout=timeout,
    )
    return b.build().send_message(message, sender=sender, recipients=recipients)


async def asend(
    message: MessageSource,
    *,
    host: str | None = None,
    port: int | str | None = None,
    username: str | None = None,
    password: str | Secret | None = None,
    tls: TlsMode | str | None = None,
    tls_settings: TlsSettings | None = None,
    timeout: float | None = None,
    sender: str | None = None,
    recipients: Sequence[str] | str | None = None,
    builder: ClientBuilder | None = None,
) -> SendResult:
    """The asyncio twin of :func:`send`."""
    b = _chosen(builder, host, port, username, password, tls, tls_settings, timeout) or _builder(
        host=host,
        port=port,
        username=username,
        password=password,
        tls=tls,
        tls_settings=tls_settings,
        timeout=timeout,
    )
    return await b.build_async().send_message(message, sender=sender, recipients=recipients)
