"""The exception tree: pickling, messages, builtin mix-ins (the pitfalls in docs/architecture.md, "Decisions")."""

from __future__ import annotations

import pickle

import pytest

import mailsdk.errors as e
from mailsdk import Secret
from mailsdk.protocol.reply import EnhancedStatus, Reply

REPLY = Reply.build(550, "5.1.1 <x@example.com>: no such user")


def instances() -> list[e.MailError]:
    return [
        e.MailError("base"),
        e.LocalProtocolError("illegal now"),
        e.RemoteProtocolError("mixed codes"),
        e.ConnectError("refused"),
        e.ConnectionLost("reset"),
        e.TLSError("bad cert"),
        e.MailTimeout("slow", phase="data"),
        e.ConnectTimeout("slow connect", phase="connect"),
        e.ReadTimeout("slow read", phase="command"),
        e.WriteTimeout("slow write", phase="data"),
        e.ReplyError(REPLY, "VRFY"),
        e.GreetingRefused(Reply.build(554, "go away")),
        e.HeloRefused(Reply.build(501, "bad name"), "EHLO"),
        e.StartTLSRefused(Reply.build(454, "4.7.0 no TLS"), "STARTTLS"),
        e.AuthenticationFailed(
            Reply.build(535, "5.7.139 disabled"),
            mechanism="XOAUTH2",
            server_error={"status": "401"},
            hint="h",
        ),
        e.SenderRefused(REPLY, "a@example.org"),
        e.RecipientsRefused(
            {"x@example.com": REPLY, "y@example.com": Reply.build(450, "4.2.0 later")}
        ),
        e.DataRefused(Reply.build(554, "5.6.0 bad content"), "DATA"),
        e.CommandRefused(Reply.build(502, "5.5.1 no"), "EXPN"),
        e.CapabilityError("no SMTPUTF8", extension="SMTPUTF8"),
        e.AuthError("no common mechanism"),
        e.TokenError(
            "msal failed", error="invalid_client", error_description="bad", correlation_id="c-1"
        ),
        e.InvalidInputError("CR in address"),
        e.ConfigurationError("plaintext credentials"),
    ]


@pytest.mark.parametrize("exc", instances(), ids=lambda x: type(x).__name__)
def test_pickle_round_trip_keeps_type_message_and_attributes(exc: e.MailError) -> None:
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is type(exc)
    assert str(clone) == str(exc)
    assert clone.args == exc.args
    assert vars(clone) == vars(exc)


@pytest.mark.parametrize("exc", instances(), ids=lambda x: type(x).__name__)
def test_str_never_shows_errno(exc: e.MailError) -> None:
    assert "[Errno" not in str(exc)
    assert exc.errno is None
    assert isinstance(exc, OSError)


def test_reply_error_exposes_structured_reply() -> None:
    exc = e.SenderRefused(REPLY, "a@example.org")
    assert exc.smtp_code == 550
    assert exc.smtp_error == b"5.1.1 <x@example.com>: no such user"
    assert exc.enhanced_status == EnhancedStatus(5, 1, 1)
    assert exc.is_permanent
    assert not exc.is_transient
    assert exc.command == "MAIL"
    assert exc.sender == "a@example.org"
    transient = e.DataRefused(Reply.build(451, "4.3.0 try again"), "DATA")
    assert transient.is_transient
    assert not transient.is_permanent


def test_recipients_refused_needs_one_and_keeps_all() -> None:
    exc = instances()[16]
    assert isinstance(exc, e.RecipientsRefused)
    assert set(exc.refused) == {"x@example.com", "y@example.com"}
    assert exc.reply.code == 450  # the last refusal
    with pytest.raises(ValueError):
        e.RecipientsRefused({})


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (e.ConnectError, ConnectionError),
        (e.ConnectionLost, ConnectionError),
        (e.MailTimeout, TimeoutError),
        (e.ConnectTimeout, TimeoutError),
        (e.ConnectTimeout, e.ConnectError),
        (e.ReadTimeout, TimeoutError),
        (e.InvalidInputError, ValueError),
        (e.ConfigurationError, ValueError),
        (e.TokenError, e.AuthError),
    ],
)
def test_builtin_mixins(cls: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(cls, builtin)
    assert issubclass(cls, e.MailError)


def test_every_public_error_is_in_the_docstring_tree() -> None:
    doc = e.__doc__ or ""
    for name in e.__all__:
        assert name in doc, f"{name} missing from the tree in mailsdk.errors"


def test_secret_never_shows() -> None:
    s = Secret("hunter2")
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s)
    assert "hunter2" not in f"{s}"
    assert "hunter2" not in f"{s!r:>40}"
    assert s.reveal() == "hunter2"
    assert s == Secret("hunter2")
    assert s != Secret("hunter3")
    assert bool(Secret("")) is False
    with pytest.raises(TypeError):
        pickle.dumps(s)
    with pytest.raises(TypeError):
        Secret(b"bytes")  # type: ignore[arg-type]
    assert Secret(s).reveal() == "hunter2"
