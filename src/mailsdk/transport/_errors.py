"""The one mapping of OSError / ssl.SSLError / timeouts onto the typed errors of mailsdk.errors.

Layer: L3 (transport). May import L0 (``mailsdk.errors``) and the standard library only; must
never import ``mailsdk.protocol``, ``esmtp``, ``auth``, ``flows``, ``telemetry`` or ``client``.

Every socket, ssl and asyncio call in the transport runs inside :func:`map_errors`, so no bare
``OSError`` (or ``asyncio.IncompleteReadError``) ever escapes: it becomes a
:class:`~mailsdk.errors.TransportError` subclass with the original kept as ``__cause__``. The same
object works as ``with map_errors(...)`` and ``async with map_errors(...)``.

The table (first match wins)::

    already a MailError                 -> unchanged
    TimeoutError (socket.timeout,       -> ConnectTimeout   (CONNECT, TLS_HANDSHAKE)
      asyncio.TimeoutError)                ReadTimeout      (READ)
                                           WriteTimeout     (WRITE)
    ssl.SSLCertVerificationError        -> TLSError (with OpenSSL's verification message)
    ssl.SSLEOFError / SSLZeroReturnError-> ConnectionLost   (READ, WRITE)
    other ssl.SSLError                  -> TLSError
    asyncio.IncompleteReadError         -> ConnectionLost
    UnicodeError (a host name that IDNA -> ConnectError     (CONNECT)
      cannot encode: "a..b", 64+ chars)    TLSError         (TLS_HANDSHAKE)
    other OSError                       -> ConnectError     (CONNECT)
                                           ConnectionLost   (TLS_HANDSHAKE, READ, WRITE)
"""

from __future__ import annotations

import asyncio
import enum
import ssl
import types
import typing

from mailsdk.errors import (
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    MailError,
    ReadTimeout,
    TLSError,
    TransportError,
    WriteTimeout,
)

__all__ = ["ErrorMapper", "Operation", "map_errors", "translate"]


class Operation(enum.Enum):
    """The transport operation that was running when an error happened.

    The value is what the raised timeout carries as its ``phase`` (a driver that knows the SMTP
    phase, e.g. ``"greeting"`` or ``"data"``, may overwrite ``exc.phase``).
    """

    CONNECT = "connect"
    TLS_HANDSHAKE = "tls_handshake"
    READ = "read"
    WRITE = "write"


_VERB: typing.Final[dict[Operation, str]] = {
    Operation.CONNECT: "connecting to",
    Operation.TLS_HANDSHAKE: "the TLS handshake with",
    Operation.READ: "reading from",
    Operation.WRITE: "writing to",
}


def _describe(exc: BaseException) -> str:
    """A short, secret-free description of a low-level exception."""
    # ``reason``/``library``/``verify_message`` are only set on errors raised by OpenSSL.
    reason = getattr(exc, "reason", None)
    if isinstance(exc, ssl.SSLError) and reason:
        library = getattr(exc, "library", None)
        return f"{reason} ({library})" if library else str(reason)
    text = str(exc)
    return text or type(exc).__name__


def _timeout(operation: Operation, message: str) -> TransportError:
    match operation:
        case Operation.CONNECT | Operation.TLS_HANDSHAKE:
            return ConnectTimeout(message, phase=operation.value)
        case Operation.READ:
            return ReadTimeout(message, phase=operation.value)
        case Operation.WRITE:
            return WriteTimeout(message, phase=operation.value)
    typing.assert_never(operation)


def translate(
    exc: BaseException, operation: Operation, target: str | None = None
) -> MailError | None:
    """Map one low-level exception onto the mailsdk error it stands for.

    Args:
        exc: the exception raised by a socket, ssl or asyncio call.
        operation: what the transport was doing.
        target: the peer as text (``"host:port"`` or a socket path), for the message.

    Returns:
        The new error (the caller raises it ``from exc``), or ``None`` when ``exc`` is already a
        mailsdk error or is not an I/O error at all (it then propagates unchanged).
    """
    if isinstance(exc, MailError):
        return None
    where = f"{_VERB[operation]} {target}" if target else _VERB[operation]
    if isinstance(exc, TimeoutError):
        return _timeout(operation, f"timed out {where}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        # RFC 3207 §4.1 / RFC 8314 §3: the client must check the server's identity.
        detail = getattr(exc, "verify_message", None) or _describe(exc)
        return TLSError(f"TLS certificate verification failed ({where}): {detail}")
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError) and operation in (
        Operation.READ,
        Operation.WRITE,
    ):
        return ConnectionLost(f"connection closed while {where}: {_describe(exc)}")
    if isinstance(exc, ssl.SSLError):
        return TLSError(f"TLS error ({where}): {_describe(exc)}")
    if isinstance(exc, asyncio.IncompleteReadError):
        return ConnectionLost(f"connection closed while {where}: got {len(exc.partial)} bytes")
    if isinstance(exc, UnicodeError) and operation is Operation.CONNECT:
        # getaddrinfo() IDNA-encodes the name first: an empty or over-long label is unresolvable.
        return ConnectError(f"failed {where}: invalid host name ({exc})")
    if isinstance(exc, UnicodeError) and operation is Operation.TLS_HANDSHAKE:
        return TLSError(f"TLS error ({where}): invalid server name ({exc})")
    if isinstance(exc, OSError):
        if operation is Operation.CONNECT:
            return ConnectError(f"failed {where}: {_describe(exc)}")
        return ConnectionLost(f"connection lost while {where}: {_describe(exc)}")
    return None


class ErrorMapper:
    """Context manager (sync and async) that re-raises I/O errors as mailsdk errors.

    Use :func:`map_errors` to create one.
    """

    __slots__ = ("operation", "target")

    def __init__(self, operation: Operation, target: str | None = None) -> None:
        self.operation = operation
        self.target = target

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        if exc is None:
            return
        mapped = translate(exc, self.operation, self.target)
        if mapped is not None:
            raise mapped from exc

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def map_errors(operation: Operation, target: str | None = None) -> ErrorMapper:
    """Return a context manager mapping I/O errors raised inside it (see the module table).

    Usable as ``with map_errors(Operation.READ, "mx.example:25"):`` in blocking code and as
    ``async with`` in coroutines (``asyncio.CancelledError`` is never touched).

    Args:
        operation: the running operation; it selects the timeout class and the error wording.
        target: the peer as text, for the message.

    Returns:
        The context manager.
    """
    return ErrorMapper(operation, target)
