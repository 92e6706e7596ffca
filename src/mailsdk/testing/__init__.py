"""A test kit for code that sends mail with mailsdk: an in-process SMTP/LMTP server.

Layer: L7 (beside ``mailsdk.api`` and ``mailsdk.compat``). Needs the ``testing`` extra
(``pip install 'mailsdk[testing]'``: aiosmtpd and trustme). ``import mailsdk`` never imports
it.

The server records what it receives (envelope, raw bytes, the parsed message), can be scripted
to refuse recipients or commands, to inject faults (4xx bursts, 421, a drop before or after the
final dot, slow replies, a reader that stalls), offers STARTTLS or implicit TLS with a
throwaway CA the clients it builds trust, and AUTH with given passwords or OAuth tokens::

    from mailsdk.testing import serve

    with serve(tls="starttls", users={"me": "pw"}) as server:
        server.refuse_recipient("nobody@example.org")
        with server.client(username="me", password="pw").connect() as session:
            result = session.send_message(msg)
        assert server.messages[0].message["Subject"] == msg["Subject"]

With pytest, enable the plugin (``pytest_plugins = ["mailsdk.testing.pytest_plugin"]``) and
use the ``mail_server`` fixture. See docs/testing-kit.md.
"""

from __future__ import annotations

from mailsdk.testing.records import Command, Login, ReceivedMessage, Recording
from mailsdk.testing.rules import Rule, Script
from mailsdk.testing.server import MailServer, serve

__all__ = [
    "Command",
    "Login",
    "MailServer",
    "ReceivedMessage",
    "Recording",
    "Rule",
    "Script",
    "serve",
]
