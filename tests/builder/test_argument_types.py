"""Every ``ClientBuilder.with_*`` method refuses an argument of the wrong type at the call, with
a ``ConfigurationError`` naming the method, the parameter and what it expects (never a bare
``TypeError``/``AttributeError`` later, never a truthy string taken for ``True``), and never
showing a secret given in the wrong place."""

from __future__ import annotations

import typing

import pytest

from mailsdk import Secret
from mailsdk.auth.tokens import StaticTokenProvider
from mailsdk.builder import ClientBuilder
from mailsdk.errors import ConfigurationError
from mailsdk.flows import TlsMode

SECRET = "hunter2-Secret-value"
TOKEN = StaticTokenProvider("t")


def _b() -> ClientBuilder:
    return ClientBuilder.smtp("mx.example", 587)


# (method, positional args, keyword args, the parameter named, a phrase of the expectation)
CASES: list[tuple[str, tuple[object, ...], dict[str, object], str, str]] = [
    ("with_tls", (True,), {}, "mode", "TlsMode"),
    ("with_tls", (1,), {}, "mode", "TlsMode"),
    ("with_tls", ("sometimes",), {}, "mode", "unknown TLS mode"),
    ("with_tls", ("starttls",), {"settings": "ca.pem"}, "settings", "TlsSettings"),
    ("with_tls", ("starttls",), {"server_hostname": 5}, "server_hostname", "str"),
    ("with_tls", ("starttls",), {"server_hostname": ""}, "server_hostname", "non-empty str"),
    ("with_tls_settings", ("ca.pem",), {}, "settings", "TlsSettings"),
    ("with_tls_settings", (None,), {}, "settings", "TlsSettings"),
    ("with_credentials", (5, "pw"), {}, "username", "str"),
    ("with_credentials", ("me", 1234), {}, "password", "str or Secret"),
    ("with_credentials", ("me", b"pw"), {}, "password", "str or Secret"),
    ("with_credentials", ("me", 987654321), {}, "password", "not an int"),  # never the value
    ("with_token_provider", ("me", 987654321), {}, "provider", "not an int"),
    ("with_credentials", ("me", "pw"), {"mechanisms": [b"PLAIN"]}, "mechanisms", "names"),
    ("with_credentials", ("me", "pw"), {"mechanisms": 5}, "mechanisms", "names"),
    ("with_credentials", ("me", "pw"), {"authzid": 5}, "authzid", "str"),
    (
        "with_credentials",
        ("me", "pw"),
        {"allow_plaintext": "no"},
        "allow_plaintext",
        "True or False",
    ),
    ("with_token_provider", (None, TOKEN), {}, "username", "str"),
    ("with_token_provider", ("me", SECRET), {}, "provider", "StaticTokenProvider"),
    ("with_token_provider", ("me", Secret(SECRET)), {}, "provider", "StaticTokenProvider"),
    ("with_token_provider", ("me", object()), {}, "provider", "get_token"),
    ("with_token_provider", ("me", TOKEN), {"mechanisms": None}, "mechanisms", "names"),
    (
        "with_token_provider",
        ("me", TOKEN),
        {"allow_plaintext": 1},
        "allow_plaintext",
        "True or False",
    ),
    ("with_timeouts", (True,), {}, "timeouts", "number of seconds"),
    ("with_timeouts", ("soon",), {}, "timeouts", "number of seconds"),
    ("with_timeouts", ([5],), {}, "timeouts", "number of seconds"),
    ("with_limits", (5,), {}, "limits", "ReplyLimits"),
    ("with_local_hostname", (b"c.test",), {}, "name", "str"),
    ("with_local_hostname", ("",), {}, "name", "non-empty str"),
    ("with_source_address", (("10.0.0.1", 0),), {}, "host", "str"),
    ("with_source_address", ("10.0.0.1", "25"), {}, "port", "int from 0 to 65535"),
    ("with_source_address", ("10.0.0.1", True), {}, "port", "int from 0 to 65535"),
    ("with_source_address", ("10.0.0.1", 70000), {}, "port", "int from 0 to 65535"),
    ("with_lmtp", ("no",), {}, "enabled", "True or False"),
    ("with_lmtp", (0,), {}, "enabled", "True or False"),
    ("with_pipelining", ("off",), {}, "enabled", "True or False"),
    ("with_chunking", ("required",), {}, "mode", "True or False"),
    ("with_chunking", (None,), {"chunk_size": "5"}, "chunk_size", "positive int"),
    ("with_8bit_policy", (), {"require_8bitmime": "yes"}, "require_8bitmime", "True or False"),
    ("with_mail_options", ({"ret": "HDRS"},), {}, "options", "MailOptions"),
    ("with_rcpt_options", ("NOTIFY=NEVER",), {}, "options", "RcptOptions"),
    ("with_extension", ("X-FOO",), {}, "extension", "Extension"),
    ("with_mechanism", ("PLAIN",), {}, "mechanism", "Mechanism"),
    ("with_entry_point_plugins", ("yes",), {}, "enabled", "True or False"),
    ("with_instrumentation", ("otel",), {}, "instrumentation", "Instrumentation"),
    ("with_opentelemetry", (), {"record_addresses": "no"}, "record_addresses", "True or False"),
    ("with_opentelemetry", (), {"propagate": 1}, "propagate", "True or False"),
    ("with_opentelemetry", (), {"extra_verbs": "XFOO"}, "extra_verbs", "iterable"),
    ("with_opentelemetry", (), {"clock": 5.0}, "clock", "callable"),
    ("with_opentelemetry", (), {"tracer": None}, "tracer", "unexpected keyword"),
    ("with_dkim", (5, "s1", b"k"), {}, "domain", "str"),
    ("with_dkim", ("example.org", None, b"k"), {}, "selector", "str"),
    ("with_proxy", (5,), {}, "url", "proxy URL"),
    ("with_proxy", (), {"from_env": "yes"}, "from_env", "True or False"),
    ("with_connector", ("127.0.0.1:25",), {}, "connector", "Connector"),
]


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "param", "expected"),
    CASES,
    ids=[f"{c[0]}-{c[3]}-{i}" for i, c in enumerate(CASES)],
)
def test_a_wrong_type_is_refused_at_the_call(
    method: str, args: tuple[object, ...], kwargs: dict[str, object], param: str, expected: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        getattr(_b(), method)(*args, **kwargs)
    message = str(refused.value)
    assert method in message and param in message and expected in message, message
    for secret in (SECRET, "987654321"):
        assert secret not in message and secret not in repr(refused.value)


def test_every_with_method_is_covered() -> None:
    methods = {name for name in vars(ClientBuilder) if name.startswith("with_")}
    assert methods == {case[0] for case in CASES}


@pytest.mark.parametrize(
    ("method", "args", "kwargs"),
    [
        ("with_tls", ("implicit",), {"server_hostname": "mx.example"}),
        ("with_tls", (TlsMode.STARTTLS,), {}),
        ("with_credentials", ("me", Secret("pw")), {"mechanisms": "PLAIN"}),
        ("with_token_provider", ("me", TOKEN), {"mechanisms": ["XOAUTH2"]}),
        ("with_timeouts", ("2.5",), {}),  # a decimal str from an environment variable
        ("with_timeouts", (3,), {}),
        ("with_source_address", ("127.0.0.1",), {}),
        ("with_lmtp", (False,), {}),
        ("with_chunking", (True,), {"chunk_size": 4096}),
        ("with_opentelemetry", (), {"record_addresses": False, "extra_verbs": ["XFOO"]}),
        ("with_proxy", (None,), {}),
        ("with_connector", (None,), {}),
    ],
)
def test_the_right_types_still_pass(
    method: str, args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    builder = typing.cast("ClientBuilder", getattr(_b(), method)(*args, **kwargs))
    assert isinstance(builder, ClientBuilder)
    builder.config()  # and they make a valid configuration
