"""ClientBuilder.from_url: every scheme and option, unknown options named, hostile URLs refused,
and a URL's password never in a repr, log line or error (both modes, end to end)."""

from __future__ import annotations

import logging
import pickle
import socket
import urllib.parse
from collections.abc import Callable

import pytest
from tests._support.modes import Mode
from tests._support.smtpd import SmtpdServer

from mailsdk import AuthenticationFailed, ClientBuilder, ConfigurationError, Secret, TlsMode
from mailsdk.protocol.dialect import Dialect
from mailsdk.url import parse_mail_url, redact_url

PASSWORD = "s3cr%t:/?#@pw"  # reserved characters: must be percent-encoded in a URL
QUOTED = urllib.parse.quote(PASSWORD, safe="")


def test_smtp_with_options() -> None:
    config = ClientBuilder.from_url(
        "smtp://me%40example.com@Mail.Example.com:587?tls=starttls&timeout=7&connect_timeout=2"
        "&local_hostname=client.example.com&auth=plain,scram-sha-256&authzid=boss",
        password="pw",
    ).config()
    assert (config.endpoint.host, config.port) == ("mail.example.com", 587)
    assert config.tls_mode is TlsMode.STARTTLS
    assert config.timeouts.connect == 2.0
    assert config.timeouts.command == 7.0
    assert config.local_hostname == "client.example.com"
    assert config.auth is not None
    assert config.auth.username == "me@example.com"
    assert config.auth.password == Secret("pw")
    assert config.auth.mechanisms == ("PLAIN", "SCRAM-SHA-256")
    assert config.auth.authzid == "boss"


@pytest.mark.parametrize(
    ("url", "mode", "port", "dialect"),
    [
        ("smtps://mail.example.com", TlsMode.IMPLICIT, 465, Dialect.SMTP),
        ("smtp://mail.example.com:465", TlsMode.IMPLICIT, 465, Dialect.SMTP),
        ("smtp://mail.example.com", TlsMode.STARTTLS, 587, Dialect.SMTP),
        ("smtp://mail.example.com?tls=opportunistic", TlsMode.OPPORTUNISTIC, 25, Dialect.SMTP),
        ("lmtp://[::1]:24?tls=none", TlsMode.NONE, 24, Dialect.LMTP),
        ("lmtp://10.0.0.5", TlsMode.STARTTLS, 2003, Dialect.LMTP),
    ],
)
def test_tcp_schemes(url: str, mode: TlsMode, port: int, dialect: Dialect) -> None:
    config = ClientBuilder.from_url(url).config()
    assert (config.tls_mode, config.port, config.dialect) == (mode, port, dialect)


@pytest.mark.parametrize(
    ("url", "dialect"),
    [("lmtp+unix:///run/dovecot/lmtp", Dialect.LMTP), ("smtp+unix:///var/run/s%20p", Dialect.SMTP)],
)
def test_unix_schemes(url: str, dialect: Dialect) -> None:
    config = ClientBuilder.from_url(url).config()
    assert config.endpoint.path == urllib.parse.unquote(url.split("//", 1)[1])
    assert (config.tls_mode, config.dialect) == (TlsMode.NONE, dialect)


def test_tls_and_transaction_options() -> None:
    config = ClientBuilder.from_url(
        "smtp://mx.test?verify=false&pipelining=off&chunking=true&data_timeout=none"
        "&server_hostname=cert.example.com&source_address=127.0.0.2"
    ).config()
    assert config.tls.verify is False
    assert config.server_hostname == "cert.example.com"
    assert config.transaction.pipelining is False
    assert config.transaction.chunking is True
    assert config.timeouts.data is None
    assert config.endpoint.source_address == ("127.0.0.2", 0)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("smtp://mx.test?tls=none&colour=blue&zzz=1", "unknown URL option.*'colour', 'zzz'"),
        ("smtp://mx.test?tls=none&tls=starttls", "'tls' is given twice"),
        ("smtp://mx.test?tls=maybe", "unknown TLS mode"),
        ("smtp://mx.test?timeout=-1", "positive number"),
        ("smtp://mx.test?timeout=nan", "positive number"),
        ("smtp://mx.test?verify=perhaps", "use true or false"),
        ("http://mx.test", "scheme 'http'"),
        ("smtp://mx.test/path", "has a path"),
        ("smtp://mx.test#frag", "fragment"),
        ("smtp://mx.test:99999", "invalid host or port"),
        ("smtp://", "no valid host"),
        ("lmtp+unix://host/run/lmtp", "names a host"),
        ("lmtp+unix://", "absolute socket path"),
        ("smtp://mx.test?password_env=MAILSDK_TEST_UNSET", "is not set"),
        ("smtp://:pw@mx.test", "no user"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        ClientBuilder.from_url(url).config()


@pytest.mark.parametrize(
    "url",
    [
        "smtp://mx.test\r\nMAIL FROM:<x>",  # urllib would silently drop the CR/LF
        "smtp://mx.test\t",
        "smtp://mx .test",
        "smtp://mx%0d%0a.test",
        "smtp://mx.test;rm",
        "smtp://mx.test?local_hostname=a%0d%0aRCPT",
        "smtp://u%0d%0aAUTH@mx.test?password_env=HOME",
        "smtp://[not-v6]",
        "smtp://mx.test\u2028",
    ],
)
def test_injection_in_host_user_or_options_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        ClientBuilder.from_url(url, password="pw").config()
    assert "\r" not in str(info.value) and "\n" not in str(info.value)


def test_password_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILSDK_TEST_PW", PASSWORD)
    from_env = ClientBuilder.from_url("smtp://me@mx.test?password_env=MAILSDK_TEST_PW").config()
    from_url = ClientBuilder.from_url(f"smtp://me:{QUOTED}@mx.test").config()
    from_arg = ClientBuilder.from_url("smtp://me@mx.test", password=Secret(PASSWORD)).config()
    assert from_env.auth == from_url.auth == from_arg.auth
    assert from_url.auth is not None and from_url.auth.password == Secret(PASSWORD)
    with pytest.raises(ConfigurationError, match="two passwords"):
        ClientBuilder.from_url(f"smtp://me:{QUOTED}@mx.test", password="other")
    with pytest.raises(ConfigurationError, match="no password for user 'me'"):
        ClientBuilder.from_url("smtp://me@mx.test")


def test_url_password_never_shown_in_reprs_or_errors() -> None:
    url = f"smtp://me:{QUOTED}@mx.test:587?tls=starttls"
    parsed = parse_mail_url(url)
    builder = ClientBuilder.from_url(url)
    texts = [repr(parsed), str(parsed), repr(builder), repr(builder.config()), redact_url(url)]
    for bad in (
        f"smtp://me:{QUOTED}@mx.test?nope=1",
        f"smtp://me:{QUOTED}@mx.test:bad",
        f"smtp://me:{PASSWORD}@mx.test",  # unencoded: unparseable, still redacted
        f"ftp://me:{QUOTED}@mx.test",
        f"smtp://me:{QUOTED}@mx.test?tls=none",  # credentials over plaintext
    ):
        with pytest.raises(ConfigurationError) as info:
            ClientBuilder.from_url(bad).config()
        texts += [str(info.value), repr(info.value), repr(info.value.args)]
    for text in texts:
        assert PASSWORD not in text
        assert QUOTED not in text
        assert "s3cr" not in text
    assert "me:***@mx.test" in redact_url(url)
    with pytest.raises(TypeError):
        pickle.dumps(parsed.password)


@pytest.fixture
def auth_server(smtpd_factory: Callable[..., SmtpdServer]) -> SmtpdServer:
    return smtpd_factory(users={"me": PASSWORD}, auth_require_tls=False)


async def test_url_credentials_log_in_and_never_reach_the_log(
    mode: Mode, auth_server: SmtpdServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mailsdk")
    url = (
        f"smtp://me:{QUOTED}@{auth_server.host}:{auth_server.port}"
        "?tls=none&allow_plaintext=true&auth=PLAIN&timeout=3&local_hostname=client.test"
    )
    async with mode.session(ClientBuilder.from_url(url)) as s:
        assert s.mechanism == "PLAIN"
        await s.sendmail("me@example.com", ["you@example.org"], b"Subject: x\r\n\r\nhi\r\n")
    assert auth_server.recorder.auth_logins == [b"me"]
    assert caplog.records, "the wire log at DEBUG should have recorded the session"
    assert PASSWORD not in caplog.text and QUOTED not in caplog.text
    wrong = url.replace(QUOTED, "wrong%20pass")
    with pytest.raises(AuthenticationFailed) as info:
        async with mode.session(ClientBuilder.from_url(wrong)):
            pass
    assert "wrong pass" not in str(info.value) and "wrong pass" not in caplog.text


def test_spaces_only_in_file_names_and_idn_hosts_need_a_labels() -> None:
    config = ClientBuilder.from_url("smtp://mx.test?ca_file=/etc/my%20ca.pem").config()
    assert config.tls.ca_file == "/etc/my ca.pem"
    with pytest.raises(ConfigurationError, match="spaces or control"):
        ClientBuilder.from_url("smtp://mx.test?local_hostname=a%20b")
    with pytest.raises(ConfigurationError, match="A-label"):
        ClientBuilder.from_url("smtp://bücher.example")
    assert ClientBuilder.from_url("smtp://xn--bcher-kva.example").config().endpoint.host == (
        "xn--bcher-kva.example"
    )


def test_wrong_argument_types_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="is a str, not bytes"):
        ClientBuilder.from_url(b"smtp://mx.test")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="password must be a str or Secret"):
        ClientBuilder.from_url("smtp://me@mx.test", password=b"pw")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "smtp:me:hunter2@mail.example.com",  # no slashes: urllib reads user:pw@host as a path
        "smtp:/me:hunter2@mail.example.com",
        "SMTPS:me:hunter2@mail.example.com",
        "me:hunter2@mail.example.com",  # no scheme at all ("me" parses as one)
        "smtp:/me:hunter2@mail.example.com//x",  # a later "//" is not where the userinfo is
    ],
)
def test_a_password_in_a_url_without_slashes_is_redacted_in_errors(url: str) -> None:
    assert "hunter2" not in redact_url(url)
    with pytest.raises(ConfigurationError) as caught:
        ClientBuilder.from_url(url)
    assert "hunter2" not in str(caught.value)
    assert "***" in str(caught.value)


def test_anything_between_an_ipv6_literal_and_its_port_is_refused() -> None:
    assert ClientBuilder.from_url("smtp://[::1]:2525?tls=none").config().endpoint.host == "::1"
    for url in ("smtp://[::1]x:25", "smtp://[::1]evil.example:25", "smtp://[::1]x"):
        with pytest.raises(ConfigurationError, match="no valid host"):
            ClientBuilder.from_url(url)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("smtps://mail.example.com?tls=starttls", "says smtps"),
        ("smtps://mail.example.com?tls=none", "says smtps"),
        ("lmtp+unix:///run/dovecot/lmtp?tls=starttls", "unix socket"),
        ("smtp+unix:///run/smtp.sock?tls=implicit", "unix socket"),
        ("lmtp+unix:///run/dovecot/lmtp?server_hostname=mx.example.com", "server_hostname"),
        ("lmtp+unix:///run/dovecot/lmtp?verify=false", "verify"),
    ],
)
def test_options_contradicting_the_scheme_are_refused(url: str, match: str) -> None:
    # One of the two used to win silently (smtps://...?tls=none connected without any TLS).
    with pytest.raises(ConfigurationError, match=match):
        ClientBuilder.from_url(url)


def test_options_agreeing_with_the_scheme_are_accepted() -> None:
    assert ClientBuilder.from_url("smtps://h?tls=implicit").config().tls_mode is TlsMode.IMPLICIT
    config = ClientBuilder.from_url("lmtp+unix:///run/dovecot/lmtp?tls=none").config()
    assert config.tls_mode is TlsMode.NONE


def test_an_ipv6_zone_is_percent_decoded_as_rfc_6874_writes_it() -> None:
    host = ClientBuilder.from_url("smtp://[fe80::1%25lo]:25?tls=none").config().endpoint.host
    assert host == "fe80::1%lo"  # what the socket layer understands; "%25lo" is not a zone
    socket.getaddrinfo(host, 25, type=socket.SOCK_STREAM)  # resolves without DNS
    assert ClientBuilder.from_url("smtp://[fe80::1%eth0]").config().endpoint.host == "fe80::1%eth0"
    with pytest.raises(ConfigurationError, match="IPv6 zone"):
        ClientBuilder.from_url("smtp://[fe80::1%25]:25")


def test_a_password_put_in_the_query_by_mistake_is_redacted_in_errors() -> None:
    for url in ("smtp://h:99999?password=hunter2", "smtp://h#frag?x=1&pass=hunter2"):
        with pytest.raises(ConfigurationError) as caught:
            ClientBuilder.from_url(url)
        assert "hunter2" not in str(caught.value)
    assert redact_url("smtp://h?tls=none&smtp_password=hunter2&x=1") == (
        "smtp://h?tls=none&smtp_password=***&x=1"
    )
    assert redact_url("smtp://h?password_env=MY_PW") == "smtp://h?password_env=MY_PW"
