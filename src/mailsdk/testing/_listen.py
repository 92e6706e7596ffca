"""Starting aiosmtpd on loopback or a unix socket: the controllers and the free-port retry.

Layer: L7 (``mailsdk.testing``, private). Imports aiosmtpd (the ``testing`` extra) and the
kit's protocol factory. Shared by :class:`~mailsdk.testing.MailServer` and the project's own
test servers, which bring their own protocol classes through ``protocol``.
"""

from __future__ import annotations

import errno
import socket
import typing
from collections.abc import Callable

from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.smtp import SMTP

from mailsdk.testing._aiosmtpd import ServerState, make_protocol

__all__ = ["ProtocolFactory", "free_port", "start_controller"]

#: Makes the protocol object of one connection: ``(state, probe=..., **smtp_kwargs)``.
ProtocolFactory = Callable[..., SMTP]
_START_ATTEMPTS: typing.Final = 5


class _ProbeAwareController:
    """What both controllers add to aiosmtpd's: the protocol comes from ``protocol``, and
    the connection aiosmtpd opens to itself while starting is marked as a probe."""

    SMTP_kwargs: dict[str, typing.Any]

    def __init__(
        self, state: ServerState, *, protocol: ProtocolFactory, **kwargs: typing.Any
    ) -> None:
        self._state = state
        self._protocol = protocol
        self._starting = False
        super().__init__(None, **kwargs)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]

    def start(self) -> None:
        # aiosmtpd opens one connection of its own while starting (to see that the protocol
        # can be made): that probe must not use up the test's rules (a GREETING rule set
        # before start()) nor count as a session.
        self._starting = True
        try:
            super().start()  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
        finally:
            self._starting = False

    def factory(self) -> SMTP:
        return self._protocol(self._state, probe=self._starting, **self.SMTP_kwargs)


class _TcpController(_ProbeAwareController, Controller):
    pass


class _UnixController(_ProbeAwareController, UnixSocketController):
    pass


def free_port(host: str) -> int:
    """A TCP port free on ``host`` right now (another process may take it before the bind)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def start_controller(
    state: ServerState,
    *,
    host: str,
    unix_path: str | None = None,
    protocol: ProtocolFactory = make_protocol,
    **options: typing.Any,
) -> tuple[Controller | UnixSocketController, int]:
    """Start aiosmtpd (TCP on ``host`` or the unix socket ``unix_path``); returns the running
    controller and its port (0 for a unix socket). A port taken by another process between
    the choice and the bind is chosen again (a few times).

    Raises:
        OSError: the socket cannot be bound.
    """
    for _attempt in range(_START_ATTEMPTS):
        controller: Controller | UnixSocketController
        port = 0
        if unix_path is not None:
            controller = _UnixController(state, protocol=protocol, unix_socket=unix_path, **options)
        else:
            port = free_port(host)
            controller = _TcpController(
                state, protocol=protocol, hostname=host, port=port, **options
            )
        try:
            controller.start()
        except OSError as exc:  # another process took the free port in between
            if exc.errno != errno.EADDRINUSE or unix_path is not None:
                raise
            continue
        return controller, port
    raise OSError(errno.EADDRINUSE, "no free port for the test server")  # pragma: no cover
