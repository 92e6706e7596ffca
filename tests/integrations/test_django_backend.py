"""The Django backend with Django's own APIs (send_mail, send_mass_mail, EmailMessage,
EmailMultiAlternatives, get_connection) against aiosmtpd on loopback."""

from __future__ import annotations

import email
import email.policy
import ssl
import typing
from collections.abc import Callable, Iterator

import pytest
import trustme
from tests._support.django_setup import ensure_django
from tests._support.smtpd import SmtpdServer

pytest.importorskip("django", reason="the django extra is not installed")

from django.core import mail
from django.test import override_settings

from mailsdk.errors import ConfigurationError, InvalidInputError, RecipientsRefused
from mailsdk.integrations.django import EmailBackend

ensure_django()


@pytest.fixture
def server(smtpd_factory: Callable[..., SmtpdServer]) -> Iterator[SmtpdServer]:
    srv = smtpd_factory(pipelining=True, refuse_rcpt=["nobody@example.test"])
    with override_settings(EMAIL_HOST=srv.host, EMAIL_PORT=srv.port, EMAIL_TIMEOUT=10):
        yield srv


def _parsed(content: bytes) -> email.message.EmailMessage:
    return typing.cast(
        email.message.EmailMessage, email.message_from_bytes(content, policy=email.policy.default)
    )


def _sessions(server: SmtpdServer) -> int:
    return server.recorder.verbs.count("EHLO")


def test_send_mail_goes_through_mailsdk(server: SmtpdServer) -> None:
    sent = mail.send_mail("Grüße", "Hallo Welt.", "Alice <alice@client.test>", ["bob@example.test"])
    assert sent == 1
    [message] = server.recorder.messages
    assert message.mail_from == "alice@client.test"
    assert message.rcpt_tos == ["bob@example.test"]
    parsed = _parsed(message.content)
    assert parsed["Subject"] == "Grüße"
    assert parsed.get_content().strip() == "Hallo Welt."
    assert parsed["Message-ID"]


def test_send_mass_mail_uses_one_connection(server: SmtpdServer) -> None:
    datatuples = [
        (f"subject {n}", f"body {n}", "alice@client.test", [f"r{n}@example.test"]) for n in range(3)
    ]
    assert mail.send_mass_mail(datatuples) == 3
    assert [m.rcpt_tos for m in server.recorder.messages] == [
        ["r0@example.test"],
        ["r1@example.test"],
        ["r2@example.test"],
    ]
    assert _sessions(server) == 1
    assert server.recorder.verbs.count("QUIT") == 1


def test_attachments_alternatives_cc_and_bcc(server: SmtpdServer) -> None:
    msg = mail.EmailMultiAlternatives(
        "report",
        "plain text",
        "alice@client.test",
        ["bob@example.test"],
        cc=["carol@example.test"],
        bcc=["hidden@example.test"],
    )
    msg.attach_alternative("<p>html</p>", "text/html")
    msg.attach("data.bin", bytes(range(256)), "application/octet-stream")
    assert msg.send() == 1
    [message] = server.recorder.messages
    assert sorted(message.rcpt_tos) == sorted(
        ["bob@example.test", "carol@example.test", "hidden@example.test"]
    )
    assert b"hidden@example.test" not in message.content  # Bcc is envelope-only
    parsed = _parsed(message.content)
    assert parsed["Cc"] == "carol@example.test"
    html = parsed.get_body(("html",))
    assert html is not None and "<p>html</p>" in html.get_content()
    [attachment] = list(parsed.iter_attachments())
    assert attachment.get_filename() == "data.bin"
    assert attachment.get_content() == bytes(range(256))


def test_get_connection_reuses_one_session_across_calls(server: SmtpdServer) -> None:
    with mail.get_connection() as connection:
        assert isinstance(connection, EmailBackend)
        for n in range(3):
            mail.EmailMessage(
                f"s{n}", "b", "alice@client.test", ["bob@example.test"], connection=connection
            ).send()
    assert len(server.recorder.messages) == 3
    assert _sessions(server) == 1


def test_a_refused_message_raises_after_the_others_went_out(server: SmtpdServer) -> None:
    messages = [
        mail.EmailMessage("ok1", "b", "alice@client.test", ["bob@example.test"]),
        mail.EmailMessage("bad", "b", "alice@client.test", ["nobody@example.test"]),
        mail.EmailMessage("ok2", "b", "alice@client.test", ["carol@example.test"]),
    ]
    with pytest.raises(RecipientsRefused):
        mail.get_connection().send_messages(messages)
    assert [m.rcpt_tos for m in server.recorder.messages] == [
        ["bob@example.test"],
        ["carol@example.test"],
    ]
    # fail_silently: no exception, and the count says what the server accepted.
    assert mail.get_connection(fail_silently=True).send_messages(messages) == 2


def test_server_down_raises_unless_silent(server: SmtpdServer) -> None:
    server.stop()
    with pytest.raises(OSError):
        mail.send_mail("s", "b", "alice@client.test", ["bob@example.test"])
    assert (
        mail.send_mail("s", "b", "alice@client.test", ["bob@example.test"], fail_silently=True) == 0
    )


def test_contradictory_settings_are_configuration_errors() -> None:
    with (
        override_settings(EMAIL_USE_TLS=True, EMAIL_USE_SSL=True),
        pytest.raises(ConfigurationError),
    ):
        mail.get_connection()
    with override_settings(MAILSDK_POOL_SIZE=0), pytest.raises(ConfigurationError):
        mail.get_connection()
    with override_settings(MAILSDK_CLIENT="no-colon"), pytest.raises(ConfigurationError):
        mail.get_connection()


def test_starttls_with_a_ca_file_and_auth_and_no_password_in_repr(
    smtpd_factory: Callable[..., SmtpdServer],
    server_ssl_context: ssl.SSLContext,
    tls_ca: trustme.CA,
    tmp_path: typing.Any,
) -> None:
    ca_file = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    srv = smtpd_factory(starttls=server_ssl_context, users={"alice": "s3cr3t-pw"})
    with override_settings(
        EMAIL_HOST="localhost",
        EMAIL_PORT=srv.port,
        EMAIL_USE_TLS=True,
        EMAIL_HOST_USER="alice",
        EMAIL_HOST_PASSWORD="s3cr3t-pw",
        MAILSDK_CA_FILE=str(ca_file),
    ):
        connection = mail.get_connection()
        assert "s3cr3t-pw" not in repr(connection)
        assert "s3cr3t-pw" not in repr(connection.client.config)
        assert mail.send_mail("s", "b", "alice@client.test", ["bob@example.test"]) == 1
    assert srv.recorder.auth_logins == [b"alice"]
    assert "STARTTLS" in srv.recorder.verbs


def office365_tokens() -> object:
    """What a project's MAILSDK_TOKEN_PROVIDER names: a callable returning a provider."""
    from mailsdk.auth import StaticTokenProvider

    return StaticTokenProvider("tok-very-secret")


def test_oauth_token_provider_and_tls_mode_settings() -> None:
    from mailsdk.auth import StaticTokenProvider
    from mailsdk.flows import TlsMode

    with override_settings(
        EMAIL_HOST="smtp.office365.com",
        EMAIL_PORT=587,
        EMAIL_HOST_USER="sender@contoso.test",
        MAILSDK_TLS_MODE="starttls",
        MAILSDK_TOKEN_PROVIDER=f"{__name__}:office365_tokens",
    ):
        connection = mail.get_connection()
        config = connection.client.config
        assert config.tls_mode is TlsMode.STARTTLS
        assert config.auth is not None and config.auth.username == "sender@contoso.test"
        assert "StaticTokenProvider" in repr(config.auth.token_provider)  # wrapped in a cache
        assert StaticTokenProvider is not None
        assert "tok-very-secret" not in repr(connection) + repr(config)
    with override_settings(
        MAILSDK_TOKEN_PROVIDER=f"{__name__}:office365_tokens", EMAIL_HOST_USER=""
    ):
        with pytest.raises(ConfigurationError):
            mail.get_connection()


def _one_message_per_connection_server() -> tuple[int, list[bytes], Callable[[], None]]:
    """A server that answers one full transaction per connection, then hangs up (as an idle
    timeout would): a kept-open client session finds it dead on the next send."""
    import contextlib
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    messages: list[bytes] = []

    def handle(conn: socket.socket) -> None:
        with conn:
            conn.sendall(b"220 one.test ESMTP\r\n")
            buf = b""
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    verb = line[:4].upper()
                    if verb == b"DATA":
                        conn.sendall(b"354 go\r\n")
                        while b"\r\n.\r\n" not in buf:
                            more = conn.recv(65536)
                            if not more:
                                return
                            buf += more
                        body, buf = buf.split(b"\r\n.\r\n", 1)
                        messages.append(body)
                        conn.sendall(b"250 2.0.0 Ok: queued as Q1\r\n")
                        return  # hang up after one message
                    conn.sendall(
                        b"250 one.test\r\n" if verb in (b"EHLO", b"HELO") else b"250 ok\r\n"
                    )

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def stop() -> None:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)

    return listener.getsockname()[1], messages, stop


def test_a_kept_connection_the_server_dropped_is_reopened_once() -> None:
    port, messages, stop = _one_message_per_connection_server()
    try:
        with override_settings(EMAIL_HOST="127.0.0.1", EMAIL_PORT=port, EMAIL_TIMEOUT=5):
            with mail.get_connection() as connection:
                for n in range(3):
                    message = mail.EmailMessage(f"m{n}", "b", "a@client.test", ["b@example.test"])
                    assert connection.send_messages([message]) == 1
        assert [b"Subject: m%d" % n in m for n, m in enumerate(messages)] == [True] * 3
    finally:
        stop()


def test_pool_size_spreads_one_send_messages_over_several_connections(
    server: SmtpdServer,
) -> None:
    messages = [
        mail.EmailMessage(f"m{n}", "b", "alice@client.test", [f"r{n}@example.test"])
        for n in range(30)
    ]
    with override_settings(MAILSDK_POOL_SIZE=3):
        assert mail.get_connection().send_messages(messages) == 30
    assert sorted(m.rcpt_tos[0] for m in server.recorder.messages) == sorted(
        f"r{n}@example.test" for n in range(30)
    )
    # Up to three connections side by side (the pool opens them as the batch needs them).
    assert 2 <= _sessions(server) <= 3
    assert server.recorder.verbs.count("QUIT") == _sessions(server)


@pytest.mark.parametrize(
    "recipient",
    [
        "bob@example.test, carol@example.test",  # two addresses in one field
        "Bob <bob@example.test> carol@example.test",
        "bob@example.test\r\nRCPT TO:<carol@example.test>",  # an injected command
        '"bob\r\nx"@example.test',
    ],
)
def test_a_recipient_that_is_not_one_address_is_refused_not_truncated(
    server: SmtpdServer, recipient: str
) -> None:
    # parseaddr alone sent these to the first address it made out (or to "bob"), silently.
    message = mail.EmailMessage("s", "b", "alice@client.test", [recipient])
    with pytest.raises(InvalidInputError):
        mail.get_connection().send_messages([message])
    assert mail.get_connection(fail_silently=True).send_messages([message]) == 0
    assert server.recorder.messages == []


def test_display_names_with_commas_are_one_address(server: SmtpdServer) -> None:
    message = mail.EmailMessage(
        "s", "b", '"Client, Alice" <alice@client.test>', ['"Doe, Bob" <bob@example.test>']
    )
    assert mail.get_connection().send_messages([message]) == 1
    [got] = server.recorder.messages
    assert (got.mail_from, got.rcpt_tos) == ("alice@client.test", ["bob@example.test"])


@pytest.mark.parametrize("timeout", ["10", True, -1, float("inf")])
def test_a_timeout_that_is_not_a_positive_number_is_a_configuration_error(
    timeout: object,
) -> None:
    # A string (settings read from the environment) raised a bare TypeError.
    with override_settings(EMAIL_TIMEOUT=timeout), pytest.raises(ConfigurationError) as caught:
        mail.get_connection()
    assert "EMAIL_TIMEOUT" in str(caught.value)


NOT_TASKS = object()


@pytest.mark.parametrize(
    "path",
    ["no-colon", "no.such.module:tasks", f"{__name__}:missing", f"{__name__}:NOT_TASKS"],
)
def test_a_wrong_celery_tasks_setting_fails_at_construction(path: str) -> None:
    # Before: found only at send time, where fail_silently swallowed it: every message was
    # dropped and send_messages said 0, for ever.
    with override_settings(MAILSDK_CELERY_TASKS=path):
        for silent in (False, True):
            with pytest.raises(ConfigurationError, match="MAILSDK_CELERY_TASKS"):
                mail.get_connection(fail_silently=silent)
