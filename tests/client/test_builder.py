"""ClientBuilder: immutability, fluent copies, validation, presets and ``host:port`` parsing.

Pure configuration tests (no sockets) plus one end-to-end build per mode.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import attrs
import pytest
from tests._support.modes import Mode, plain_builder
from tests._support.scripted_server import Expect, ScriptedServer, Send, WaitClose, ehlo_reply
from tests._support.smtpd import SmtpdServer

from mailsdk import (
    AsyncClient,
    AsyncLMTPClient,
    Client,
    ClientBuilder,
    ConfigurationError,
    Endpoint,
    LMTPClient,
    MailError,
    MailOptions,
    RcptOptions,
    Secret,
    Timeouts,
    TlsMode,
)
from mailsdk.auth import BaseExchange, CredentialKind, SaslContext, SaslCredentials
from mailsdk.auth.tokens import AccessToken, StaticTokenProvider
from mailsdk.protocol.dialect import Dialect
from mailsdk.protocol.reply_parser import ReplyLimits
from mailsdk.transport import TlsSettings

PASSWORD = "builder-pw-123"
Scripted = Callable[..., ScriptedServer]
QUIT = [Expect(b"QUIT"), Send(b"221 bye\r\n"), WaitClose()]


class AsyncOnlyProvider:
    async def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        return AccessToken(Secret("tok"), None)


def test_builder_is_frozen() -> None:
    builder = ClientBuilder.smtp("mail.example.com", 587)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        builder.tls_mode = TlsMode.NONE  # type: ignore[misc]


def test_with_methods_return_new_builders_and_leave_the_original_alone() -> None:
    base = ClientBuilder.smtp("mail.example.com", 587)
    steps = [
        base.with_tls("none"),
        base.with_tls_settings(TlsSettings(verify=False, check_hostname=False)),
        base.with_credentials("u", PASSWORD),
        base.with_token_provider("u", StaticTokenProvider("tok")),
        base.with_timeouts(5),
        base.with_timeouts(Timeouts(command=1.0)),
        base.with_limits(ReplyLimits(max_lines=10)),
        base.with_local_hostname("me.example.org"),
        base.with_source_address("127.0.0.1"),
        base.with_lmtp(),
        base.with_pipelining(False),
        base.with_chunking(True, chunk_size=1024),
        base.with_8bit_policy(require_8bitmime=False),
        base.with_mail_options(MailOptions(ret="HDRS")),
        base.with_rcpt_options(RcptOptions(notify=("NEVER",))),
        base.with_entry_point_plugins(),
        base.with_opentelemetry(),
    ]
    for new in steps:
        assert new is not base
        assert new != base or new.instrumentation is not None
    assert base == ClientBuilder.smtp("mail.example.com", 587)
    assert base.auth is None and base.tls_mode is None and base.dialect is Dialect.SMTP


def test_settings_reach_the_config() -> None:
    config = (
        ClientBuilder.smtp("mail.example.com", 2525)
        .with_tls("opportunistic")
        .with_credentials("u", PASSWORD, mechanisms=["LOGIN"], allow_plaintext=True)
        .with_timeouts(Timeouts(greeting=3.0, command=4.0))
        .with_local_hostname("me.example.org")
        .with_chunking(False)
        .config()
    )
    assert config.tls_mode is TlsMode.OPPORTUNISTIC
    assert config.port == 2525
    assert config.auth is not None and config.auth.mechanisms == ("LOGIN",)
    assert config.auth.password == Secret(PASSWORD)
    assert config.timeouts.greeting == 3.0 and config.timeouts.command == 4.0
    assert config.local_hostname == "me.example.org"
    assert config.transaction.chunking is False


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("mail.example.com:2525", "mail.example.com", 2525),
        ("mail.example.com", "mail.example.com", None),
        ("[::1]:2525", "::1", 2525),
        ("[2001:db8::1]", "2001:db8::1", None),
        ("192.0.2.1:25", "192.0.2.1", 25),
    ],
)
def test_host_port_parsing(text: str, host: str, port: int | None) -> None:
    endpoint = ClientBuilder.smtp(text).endpoint
    assert (endpoint.host, endpoint.port) == (host, port)


def test_default_ports_and_modes() -> None:
    # 587 when STARTTLS is required (the default), 465 for implicit TLS, 25 only when asked.
    assert ClientBuilder.smtp("h").config().port == 587
    assert ClientBuilder.smtp("h").with_credentials("u", PASSWORD).config().port == 587
    assert ClientBuilder.smtp("h").with_tls("none").config().port == 25
    assert ClientBuilder.smtp("h").with_tls("opportunistic").config().port == 25
    assert ClientBuilder.smtp("h", 25).config().port == 25
    implicit = ClientBuilder.smtp("h").with_tls("implicit").config()
    assert implicit.port == 465 and implicit.tls_mode is TlsMode.IMPLICIT
    assert ClientBuilder.smtp("h", 465).config().tls_mode is TlsMode.IMPLICIT
    assert ClientBuilder.smtp("h").config().tls_mode is TlsMode.STARTTLS
    assert ClientBuilder.smtp("h").with_lmtp().with_tls("none").config().port == 2003


@pytest.mark.parametrize(
    "make",
    [
        lambda: ClientBuilder.smtp("h").with_tls("none").with_credentials("u", PASSWORD).build(),
        lambda: (
            ClientBuilder.smtp("h")
            .with_tls("opportunistic")
            .with_credentials("u", PASSWORD)
            .build_async()
        ),
        lambda: ClientBuilder.smtp("h", 0),
        lambda: ClientBuilder.smtp("h", 70000),
        lambda: ClientBuilder.smtp("h").with_chunking(chunk_size=0),
        lambda: ClientBuilder.smtp("h").with_timeouts(-1),
        lambda: ClientBuilder.smtp("h").with_tls("bogus-mode"),
        lambda: ClientBuilder.office365("me@example.com"),
        lambda: ClientBuilder.gmail("me@example.com"),
        lambda: ClientBuilder.smtp("h").with_token_provider("u", AsyncOnlyProvider()).build(),  # type: ignore[arg-type]
        lambda: Endpoint(host="h", path="/tmp/x"),
        lambda: Endpoint(),  # noqa: PLW0108 - a call, like its neighbours
    ],
    ids=[
        "credentials-no-tls",
        "credentials-opportunistic",
        "port-0",
        "port-too-big",
        "chunk-size-0",
        "negative-timeout",
        "unknown-tls-mode",
        "office365-no-credential",
        "gmail-no-credential",
        "async-provider-sync-client",
        "host-and-path",
        "no-endpoint",
    ],
)
def test_configuration_errors(make: object) -> None:
    with pytest.raises(ValueError) as info:
        make()  # type: ignore[operator]
    assert isinstance(info.value, MailError)
    assert isinstance(info.value, ConfigurationError)


def test_tls_on_a_caller_socket_needs_a_name_to_verify() -> None:
    import socket

    a, b = socket.socketpair()
    try:
        with pytest.raises(ConfigurationError, match="server_hostname"):
            ClientBuilder.from_socket(a).config()
        config = (
            ClientBuilder.from_socket(a)
            .with_tls("starttls", server_hostname="mx.example.com")
            .config()
        )
        assert config.verify_name == "mx.example.com"
    finally:
        a.close()
        b.close()


def test_malformed_host_port_is_a_value_error() -> None:
    for text in ("[::1", "mail.example.com:notaport", "[::1]x"):
        with pytest.raises(ValueError) as info:
            ClientBuilder.smtp(text)
        assert isinstance(info.value, MailError)


@pytest.mark.parametrize("preset", [ClientBuilder.office365, ClientBuilder.gmail])
def test_oauth_presets(preset: object) -> None:
    provider = StaticTokenProvider("access-token")
    builder = preset("me@example.com", token_provider=provider)  # type: ignore[operator]
    config = builder.config()
    assert config.endpoint.host in ("smtp.office365.com", "smtp.gmail.com")
    assert config.port == 587
    assert config.tls_mode is TlsMode.STARTTLS
    assert config.tls.verify
    assert config.auth is not None
    assert config.auth.username == "me@example.com"
    assert config.auth.mechanisms == ("XOAUTH2", "OAUTHBEARER")
    assert config.auth.token_provider is provider
    assert isinstance(builder.build(), Client)


def test_password_presets() -> None:
    config = ClientBuilder.gmail("me@gmail.com", password=PASSWORD).config()
    assert config.auth is not None and config.auth.password == Secret(PASSWORD)
    assert config.auth.token_provider is None
    assert PASSWORD not in repr(config)
    assert PASSWORD not in repr(ClientBuilder.office365("me@example.com", password=PASSWORD))


def test_build_picks_the_client_class() -> None:
    base = ClientBuilder.smtp("h").with_tls("none")
    assert type(base.build()) is Client
    assert type(base.build_async()) is AsyncClient
    assert type(base.with_lmtp().build()) is LMTPClient
    assert type(base.with_lmtp().build_async()) is AsyncLMTPClient
    assert type(ClientBuilder.unix("/tmp/lmtp.sock").build()) is LMTPClient
    smtp_over_unix = ClientBuilder.unix("/tmp/smtp.sock", lmtp=False).config()
    assert smtp_over_unix.dialect is Dialect.SMTP and smtp_over_unix.tls_mode is TlsMode.NONE


def test_repr_never_shows_the_password() -> None:
    builder = ClientBuilder.smtp("h").with_credentials("u", PASSWORD)
    for obj in (builder, builder.config(), builder.build(), builder.build_async(), builder.auth):
        assert PASSWORD not in repr(obj)
        assert PASSWORD not in str(obj)


async def test_built_client_sends(mode: Mode, smtpd: SmtpdServer) -> None:
    builder = plain_builder(smtpd.host, smtpd.port)
    client = mode.build(builder)
    assert client.config == builder.config()
    result = await mode.call(
        client.sendmail, "a@example.org", ["b@example.com"], b"Subject: b\r\n\r\nx\r\n"
    )
    assert result.accepted == ("b@example.com",)


def test_client_repr_shows_the_port_it_will_use() -> None:
    assert "h:587" in repr(ClientBuilder.smtp("h").build())
    assert "h:465" in repr(ClientBuilder.smtp("h").with_tls("implicit").build_async())
    assert "[::1]:25" in repr(ClientBuilder.smtp("::1").with_tls("none").build())
    assert "None" not in repr(ClientBuilder.smtp("h").build())


@pytest.mark.parametrize("port", ["587", " 587 ", 587])
def test_a_port_from_the_environment_is_accepted(port: object) -> None:
    assert ClientBuilder.smtp("h", port).config().port == 587  # type: ignore[arg-type]


@pytest.mark.parametrize("port", ["smtp", "58 7", "", 587.0, True, "-1", "٥٨٧"], ids=repr)
def test_a_bad_port_is_a_configuration_error(port: object) -> None:
    with pytest.raises(ConfigurationError, match="port"):
        ClientBuilder.smtp("h", port)  # type: ignore[arg-type]


@pytest.mark.parametrize("host", [None, "", 42])
def test_a_missing_host_is_a_configuration_error(host: object) -> None:
    with pytest.raises(ConfigurationError, match="host"):
        ClientBuilder.smtp(host)  # type: ignore[arg-type]


def test_credentials_of_the_wrong_type_are_configuration_errors() -> None:
    base = ClientBuilder.smtp("h")
    with pytest.raises(ConfigurationError, match="username"):
        base.with_credentials(None, None)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="username"):
        base.with_credentials("", PASSWORD)
    with pytest.raises(ConfigurationError, match="password") as info:
        base.with_credentials("u", b"bytes-pw-456")  # type: ignore[arg-type]
    assert "bytes-pw-456" not in str(info.value)


def test_a_token_string_instead_of_a_provider_names_static_token_provider() -> None:
    token = "ya29.a-real-looking-access-token"
    for make in (
        lambda: ClientBuilder.smtp("h").with_token_provider("u", token),  # type: ignore[arg-type]
        lambda: ClientBuilder.office365("u@example.com", token_provider=token),  # type: ignore[arg-type]
        lambda: ClientBuilder.gmail("u@example.com", token_provider=Secret(token)),  # type: ignore[arg-type]
    ):
        with pytest.raises(ConfigurationError, match="StaticTokenProvider") as info:
            make()
        assert token not in str(info.value)
    with pytest.raises(ConfigurationError, match="get_token"):
        ClientBuilder.smtp("h").with_token_provider("u", object())  # type: ignore[arg-type]


def test_a_provider_for_another_mailbox_is_refused() -> None:
    provider = StaticTokenProvider("tok", username="alice@example.com")
    with pytest.raises(ConfigurationError, match=r"alice@example\.com.*bob@example\.com"):
        ClientBuilder.office365("bob@example.com", token_provider=provider)
    # the same mailbox (whatever the case) is fine
    config = ClientBuilder.gmail("Alice@Example.com", token_provider=provider).config()
    assert config.auth is not None


def test_unknown_or_mismatched_mechanisms_fail_at_build() -> None:
    base = ClientBuilder.smtp("h").with_credentials
    with pytest.raises(ConfigurationError, match=r"unknown SASL mechanism 'PLAN'.*PLAIN"):
        base("u", PASSWORD, mechanisms=["PLAN"]).build()
    with pytest.raises(ConfigurationError, match="needs a token"):
        base("u", PASSWORD, mechanisms=["XOAUTH2"]).build_async()
    with pytest.raises(ConfigurationError, match="needs a password"):
        ClientBuilder.smtp("h").with_token_provider(
            "u", StaticTokenProvider("t"), mechanisms=["PLAIN"]
        ).build()
    # one name given as a str is one name, not its letters
    config = base("u", PASSWORD, mechanisms="plain").config()  # type: ignore[arg-type]
    assert config.auth is not None and config.auth.mechanisms == ("plain",)


def test_presets_accept_an_endpoint_override() -> None:
    provider = StaticTokenProvider("tok")
    config = ClientBuilder.office365(
        "me@example.com", token_provider=provider, endpoint="relay.test:2525"
    ).config()
    assert (config.endpoint.host, config.port) == ("relay.test", 2525)
    assert config.tls_mode is TlsMode.STARTTLS  # the preset's policy stays
    gmail = ClientBuilder.gmail("me@example.com", password=PASSWORD, endpoint="127.0.0.1").config()
    assert (gmail.endpoint.host, gmail.port) == ("127.0.0.1", 587)
    assert ClientBuilder.office365("me@example.com", password=PASSWORD).config().describe() == (
        "smtp.office365.com:587"
    )


# -- builder wiring, end to end: each with_* must reach the connection ----------------------------


async def test_with_source_address_binds_the_local_end(mode: Mode, scripted: Scripted) -> None:
    server = scripted([Send(b"220 mx.test\r\n"), Expect(b"EHLO"), Send(ehlo_reply()), *QUIT])
    builder = plain_builder(server.host, server.port).with_source_address("127.0.0.2")
    async with mode.session(builder):
        pass
    server.check()
    assert server.peer is not None and server.peer[0] == "127.0.0.2"


class XTestExchange(BaseExchange):
    def __init__(self, username: str) -> None:
        super().__init__("X-TEST")
        self._username = username

    def initial_response(self) -> bytes:
        self.finished = True
        return b"x-test:" + self._username.encode()


@attrs.frozen
class XTest:
    """A third-party SASL mechanism: no secret on the wire, so plaintext is acceptable."""

    name: str = "X-TEST"
    credential_kind: CredentialKind = CredentialKind.PASSWORD
    sends_reusable_secret: bool = False
    supports_initial_response: bool = True

    def start(self, credentials: SaslCredentials, context: SaslContext) -> BaseExchange:
        return XTestExchange(credentials.username)


async def test_with_mechanism_is_used_for_auth(mode: Mode, scripted: Scripted) -> None:
    response = base64.b64encode(b"x-test:alice").decode()
    server = scripted(
        [
            Send(b"220 mx.test\r\n"),
            Expect(b"EHLO"),
            Send(ehlo_reply("AUTH X-TEST")),
            Expect(f"AUTH X-TEST {response}\r\n".encode()),
            Send(b"235 2.7.0 ok\r\n"),
            *QUIT,
        ]
    )
    builder = (
        plain_builder(server.host, server.port)
        .with_mechanism(XTest())
        .with_credentials("alice", PASSWORD, allow_plaintext=True)
    )
    async with mode.session(builder) as s:
        assert s.mechanism == "X-TEST"
    server.check()


def test_default_timeouts_are_a_submission_clients() -> None:
    # nodemailer's: connection 2 min, greeting 30 s; the others RFC 5321 §4.5.3.2's.
    timeouts = ClientBuilder.smtp("h").config().timeouts
    assert (timeouts.connect, timeouts.greeting) == (120.0, 30.0)
    assert (timeouts.command, timeouts.data) == (300.0, 600.0)
    doc = Timeouts.__doc__ or ""
    assert "RFC 5321: 5 min" in doc and "10 min" in doc  # the RFC values stay documented


@pytest.mark.parametrize("value", [None, [2], b"x", "soon", object()])
def test_with_timeouts_of_the_wrong_type_is_a_configuration_error(value: object) -> None:
    with pytest.raises(ConfigurationError, match="Timeouts or a number"):
        ClientBuilder.smtp("h.example").with_timeouts(value)  # type: ignore[arg-type]


def test_with_timeouts_takes_a_number_from_an_environment_variable() -> None:
    built = ClientBuilder.smtp("h.example").with_timeouts("2").config()
    assert built.timeouts == Timeouts.uniform(2.0)


@pytest.mark.parametrize("size", ["5", 5.5, True])
def test_a_chunk_size_of_the_wrong_type_is_a_configuration_error(size: object) -> None:
    with pytest.raises(ConfigurationError, match="chunk_size"):
        ClientBuilder.smtp("h.example").with_chunking(chunk_size=size)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "value", "field"),
    [
        ("with_limits", 5, "limits"),
        ("with_limits", None, "limits"),
        ("with_local_hostname", 5, "local_hostname"),
        ("with_local_hostname", b"c.test", "local_hostname"),
    ],
)
def test_a_setting_of_the_wrong_type_is_refused_at_once(
    method: str, value: object, field: str
) -> None:
    # Stored as given, these failed later as an AttributeError in a send; the builder method
    # refuses them now (tests/builder/test_argument_types.py covers every with_* method).
    with pytest.raises(ConfigurationError, match=method):
        getattr(ClientBuilder.smtp("h.example"), method)(value)
    # the client configuration keeps its own check for configs made without a builder
    config = ClientBuilder.smtp("h.example").config()
    with pytest.raises(ConfigurationError, match=field):
        attrs.evolve(config, **{field: value})
