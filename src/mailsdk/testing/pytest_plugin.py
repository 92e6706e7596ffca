"""The opt-in pytest plugin of :mod:`mailsdk.testing`: ``mail_server`` fixtures.

Layer: L7 (``mailsdk.testing``). Enable it in a ``conftest.py`` with
``pytest_plugins = ["mailsdk.testing.pytest_plugin"]`` or on the command line with
``-p mailsdk.testing.pytest_plugin``; installing mailsdk never enables it on its own (there is
no ``pytest11`` entry point).

Fixtures:

* ``mail_server``: a started :class:`~mailsdk.testing.MailServer` for one test, configured by
  an optional marker: ``@pytest.mark.mail_server(tls="starttls", users={"me": "pw"})``.
* ``mail_server_factory``: call it with :class:`~mailsdk.testing.MailServer` options to start
  more servers; all are stopped after the test.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator

import pytest

from mailsdk.testing.server import MailServer

__all__ = ["mail_server", "mail_server_factory", "pytest_configure"]


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``mail_server`` marker (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers", "mail_server(**options): options for the mail_server fixture (MailServer)"
    )


@pytest.fixture
def mail_server_factory() -> Iterator[Callable[..., MailServer]]:
    """Start :class:`MailServer` instances with the given options; stopped after the test."""
    servers: list[MailServer] = []

    def start(**options: typing.Any) -> MailServer:
        server = MailServer(**options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def mail_server(
    request: pytest.FixtureRequest, mail_server_factory: Callable[..., MailServer]
) -> MailServer:
    """A started :class:`MailServer`; options from the ``mail_server`` marker, if any."""
    marker = request.node.get_closest_marker("mail_server")
    options = dict(marker.kwargs) if marker is not None else {}
    return mail_server_factory(**options)
