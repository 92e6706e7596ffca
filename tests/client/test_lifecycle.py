"""The connection's lifecycle: when the client lets a connection go, both modes.

Each test kills a one-line mutation that used to survive the suite: a session left open after
the ``with`` block, or after a refusal during ``connect()`` the session cannot recover from. The
scripted server's ``WaitClose`` step ends only when the client closes its end, so a leaked
socket (kept alive here by the exception the test holds) is seen as a script that never ends.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests._support.modes import Mode, plain_builder
from tests._support.scripted_server import Expect, ScriptedServer, Send, WaitClose, ehlo_reply

from mailsdk import AuthenticationFailed, HeloRefused, MailError, StartTLSRefused

Scripted = Callable[..., ScriptedServer]
#: How long the client may take to close after its last command (generous for a loaded box).
CLOSE_WITHIN = 2.0


def closed_by_client(server: ScriptedServer) -> bool:
    return server.done.wait(CLOSE_WITHIN) and not server.errors


async def test_leaving_the_block_closes_the_connection(mode: Mode, scripted: Scripted) -> None:
    server = scripted(
        [
            Send(b"220 mx.test\r\n"),
            Expect(b"EHLO"),
            Send(ehlo_reply()),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
            WaitClose(),
        ]
    )
    async with mode.session(plain_builder(server.host, server.port)) as s:
        assert not s.closed
    assert s.closed
    assert closed_by_client(server)


REFUSALS = {
    "helo": (
        [Send(b"550 no EHLO\r\n"), Expect(b"HELO"), Send(b"550 no HELO either\r\n")],
        HeloRefused,
        {},
    ),
    "starttls": (
        [Send(ehlo_reply("STARTTLS")), Expect(b"STARTTLS"), Send(b"454 4.7.0 not now\r\n")],
        StartTLSRefused,
        {"tls": "starttls"},
    ),
    "auth": (
        [Send(ehlo_reply("AUTH PLAIN")), Expect(b"AUTH PLAIN"), Send(b"535 5.7.8 bad\r\n")],
        AuthenticationFailed,
        {"auth": True},
    ),
}


@pytest.mark.parametrize("refusal", list(REFUSALS.values()), ids=list(REFUSALS))
async def test_a_refused_connect_gives_the_connection_up(
    mode: Mode,
    scripted: Scripted,
    refusal: tuple[list[object], type[MailError], dict[str, object]],
) -> None:
    steps, error, options = refusal
    server = scripted(
        [
            Send(b"220 mx.test\r\n"),
            Expect(b"EHLO"),
            *steps,
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
            WaitClose(),
        ]
    )
    builder = plain_builder(server.host, server.port)
    if options.get("tls"):
        builder = builder.with_tls("starttls", server_hostname="localhost")
    if options.get("auth"):
        builder = builder.with_credentials("u", "secret-pw-789", allow_plaintext=True)
    with pytest.raises(error) as info:  # held: the traceback keeps the driver's frames alive
        await mode.connect(builder)
    assert closed_by_client(server), "the client kept the refused connection open"
    assert "secret-pw-789" not in str(info.value)
