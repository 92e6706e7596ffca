"""State errors never name a raw line (it may be a SASL secret)."""

from __future__ import annotations

import base64

import pytest

from mailsdk.errors import LocalProtocolError
from mailsdk.protocol import ClientConnection, Raw


def test_raw_line_never_named_in_a_state_error() -> None:
    from mailsdk.protocol import Data, Ehlo, MailFrom, RcptTo

    conn = ClientConnection()
    conn.receive_data(b"220 mx ESMTP\r\n")
    conn.next_event()
    for command, reply in (
        (Ehlo("c.example"), b"250 mx\r\n"),
        (MailFrom("a@example.org"), b"250 ok\r\n"),
        (RcptTo("b@example.com"), b"250 ok\r\n"),
        (Data(), b"354 go\r\n"),
    ):
        conn.send(command)
        conn.receive_data(reply)
        conn.next_event()
    secret = base64.b64encode(b"\0user\0password").decode()
    with pytest.raises(LocalProtocolError) as info:
        conn.send(Raw(secret))  # in BODY only message content may be sent
    assert "BODY" in str(info.value)
    assert secret.upper() not in str(info.value).upper()
