"""Pure tests of the sans-IO flows: generators driven with send(), no sockets, no loop.

Each test plays the driver: it checks the action a flow yields and sends back the result a
driver would produce (httpx tests/test_auth.py style).
"""

from __future__ import annotations

import base64
import typing
from collections.abc import Generator

import pytest

from mailsdk._secret import Secret
from mailsdk.auth import MechanismRegistry
from mailsdk.auth.tokens import AccessToken
from mailsdk.errors import (
    AuthenticationFailed,
    AuthError,
    CapabilityError,
    DataRefused,
    GreetingRefused,
    HeloRefused,
    InvalidInputError,
    RecipientsRefused,
    SenderRefused,
    StartTLSRefused,
)
from mailsdk.esmtp import Capabilities, MailOptions, parse_ehlo
from mailsdk.flows import (
    Action,
    AuthRequest,
    AwaitGreeting,
    BdatChunk,
    BodyChunk,
    Exchange,
    ObtainToken,
    StartTls,
    TlsInfo,
    TlsMode,
    TransactionOptions,
    authenticate,
    greet,
    hello,
    negotiate_tls,
    prepare_raw,
    transaction,
)
from mailsdk.protocol.commands import (
    Auth,
    AuthResponse,
    Data,
    EndOfData,
    Helo,
    MailFrom,
    RcptTo,
    Rset,
)
from mailsdk.protocol.dialect import Dialect
from mailsdk.protocol.events import CommandReplied, GreetingReceived
from mailsdk.protocol.reply import Reply

T = typing.TypeVar("T")


def caps(*lines: str) -> Capabilities:
    return parse_ehlo(Reply.build(250, "mx.example.com", *lines))


def ok(code: int = 250, text: str = "2.0.0 ok") -> Reply:
    return Reply.build(code, text)


class Script:
    """Drives a flow: ``expect`` the next action, then ``answer`` it."""

    def __init__(self, flow: Generator[Action, object, T]) -> None:
        self.flow = flow
        self.action: Action | None = next(flow)
        self.value: object = None
        self.done = False

    def answer(self, result: object) -> Action | None:
        try:
            self.action = self.flow.send(result)
        except StopIteration as stop:
            self.value = stop.value
            self.done = True
            self.action = None
        return self.action

    def replies(self, *replies: Reply) -> Action | None:
        assert isinstance(self.action, Exchange)
        assert len(self.action.frames) == len(replies) == self.action.replies
        commands = [f for f in self.action.frames if not isinstance(f, BodyChunk | BdatChunk)]
        return self.answer(
            tuple(CommandReplied(c, r) for c, r in zip(commands, replies, strict=True))
        )


def body_of(s: Script) -> bytes | None:
    """Play the driver for a DATA body: collect the body pieces (exchanges that wait for no
    reply) up to the end-of-data exchange, which is left for the test to answer; None when
    the flow does not send a body now."""
    data = b""
    while isinstance(s.action, Exchange) and s.action.frames:
        frames = s.action.frames
        if isinstance(frames[-1], EndOfData):
            assert s.action.replies == 1
            return data + b"".join(f.data for f in frames if isinstance(f, BodyChunk))
        if not all(isinstance(f, BodyChunk) for f in frames):
            return None
        assert s.action.replies == 0
        data += b"".join(f.data for f in frames if isinstance(f, BodyChunk))
        s.answer(())
    return None


def bdat_of(action: Action | None) -> BdatChunk | None:
    """The BDAT chunk an exchange sends, else None."""
    if isinstance(action, Exchange) and len(action.frames) == 1:
        frame = action.frames[0]
        return frame if isinstance(frame, BdatChunk) else None
    return None


RAW = b"Subject: hi\r\n\r\nbody\r\n"


def test_pipelined_transaction_partial_acceptance() -> None:
    prepared = prepare_raw(
        "a@example.org", ["b@example.com", "x@example.com", "c@example.com"], RAW
    )
    s = Script(transaction(prepared, caps("PIPELINING", "SIZE 1000")))
    assert isinstance(s.action, Exchange)
    cmds = s.action.frames
    assert [type(c) for c in cmds] == [MailFrom, RcptTo, RcptTo, RcptTo, Data]
    assert cmds[0].to_bytes() == f"MAIL FROM:<a@example.org> SIZE={len(RAW)}\r\n".encode()
    s.replies(ok(), ok(), Reply.build(550, "5.1.1 no such user"), ok(), ok(354, "go ahead"))
    assert body_of(s) == RAW
    s.answer((CommandReplied(EndOfData(), Reply.build(250, "2.0.0 Ok: queued as ABC123")),))
    assert s.done
    result = s.value
    assert result.accepted == ("b@example.com", "c@example.com")
    assert list(result.refused) == ["x@example.com"]
    assert result.refused["x@example.com"].code == 550
    assert result.queue_id == "ABC123"
    assert result.size == len(RAW)
    assert not result.ok


def test_all_refused_with_pipelined_354_sends_empty_body_then_rset() -> None:
    prepared = prepare_raw("a@example.org", ["x@example.com"], RAW)
    s = Script(transaction(prepared, caps("PIPELINING")))
    s.replies(ok(), Reply.build(550, "5.1.1 nope"), ok(354, "go"))
    # RFC 2920 §3.1: DATA accepted though no RCPT was: end it with an empty body.
    assert body_of(s) == b""
    s.answer((CommandReplied(EndOfData(), Reply.build(554, "5.5.1 no valid recipients")),))
    assert isinstance(s.action, Exchange)
    assert isinstance(s.action.frames[0], Rset)
    with pytest.raises(RecipientsRefused) as info:
        s.replies(ok())
    assert info.value.refused["x@example.com"].code == 550


def test_sender_refused_resets_and_raises() -> None:
    prepared = prepare_raw("a@example.org", ["b@example.com"], RAW)
    s = Script(transaction(prepared, caps()))  # no PIPELINING: one command at a time
    assert isinstance(s.action, Exchange) and len(s.action.frames) == 1
    s.replies(Reply.build(553, "5.7.1 sender rejected"))
    assert isinstance(s.action, Exchange) and isinstance(s.action.frames[0], Rset)
    with pytest.raises(SenderRefused) as info:
        s.replies(ok())
    assert info.value.sender == "a@example.org"
    assert info.value.smtp_code == 553


def test_421_skips_rset() -> None:
    prepared = prepare_raw("a@example.org", ["b@example.com"], RAW)
    s = Script(transaction(prepared, caps()))
    with pytest.raises(SenderRefused) as info:
        s.replies(Reply.build(421, "4.3.2 shutting down"))
    assert info.value.is_transient


@pytest.mark.parametrize("where", ["rcpt", "data"])
def test_a_421_anywhere_in_a_refused_pipelined_group_ends_it_without_rset(where: str) -> None:
    # MAIL refused (451) and, in the same group, a 421 to a RCPT or to DATA: the server is
    # closing the channel (RFC 5321 §3.8), so nothing more is written, neither an RSET nor an
    # empty body (deliver_many and the express lane already stopped there).
    prepared = prepare_raw("a@example.org", ["b@example.com"], RAW)
    s = Script(transaction(prepared, caps("PIPELINING")))
    closing = Reply.build(421, "4.3.2 shutting down")
    rcpt = closing if where == "rcpt" else Reply.build(503, "5.5.1 no MAIL")
    data = closing if where == "data" else Reply.build(503, "5.5.1 no valid recipients")
    with pytest.raises(SenderRefused) as info:
        s.replies(Reply.build(451, "4.3.0 try later"), rcpt, data)
    assert info.value.smtp_code == 451


def test_data_refused() -> None:
    prepared = prepare_raw("a@example.org", ["b@example.com"], RAW)
    s = Script(transaction(prepared, caps()))
    s.replies(ok())
    s.replies(ok())
    assert isinstance(s.action, Exchange) and isinstance(s.action.frames[0], Data)
    s.replies(Reply.build(451, "4.3.0 try later"))
    assert isinstance(s.action.frames[0], Rset)
    with pytest.raises(DataRefused):
        s.replies(ok())


def test_size_over_limit_refused_before_any_command() -> None:
    prepared = prepare_raw("a@example.org", ["b@example.com"], b"x" * 2000)
    flow = transaction(prepared, caps("SIZE 1000"))
    with pytest.raises(CapabilityError) as info:
        next(flow)
    assert info.value.extension == "SIZE"


def test_smtputf8_required_but_missing() -> None:
    prepared = prepare_raw("josé@example.org", ["b@example.com"], RAW)
    with pytest.raises(CapabilityError):
        next(transaction(prepared, caps()))


def test_8bit_needs_8bitmime_and_announces_it() -> None:
    prepared = prepare_raw("a@example.org", ["b@example.com"], "Subject: x\r\n\r\ncafé\r\n")
    with pytest.raises(CapabilityError):
        next(transaction(prepared, caps()))
    s = Script(transaction(prepared, caps("8BITMIME")))
    assert isinstance(s.action, Exchange)
    assert b"BODY=8BITMIME" in s.action.frames[0].to_bytes()
    relaxed = Script(
        transaction(prepared, caps(), options=TransactionOptions(require_8bitmime=False))
    )
    assert isinstance(relaxed.action, Exchange)


def test_dsn_options_reach_the_wire() -> None:
    prepared = prepare_raw("a@example.org", ["b@example.com"], RAW)
    s = Script(
        transaction(prepared, caps("DSN"), mail_options=MailOptions(ret="HDRS", envid="id+1"))
    )
    assert isinstance(s.action, Exchange)
    assert s.action.frames[0].to_bytes() == b"MAIL FROM:<a@example.org> RET=HDRS ENVID=id+2B1\r\n"


def test_no_recipients() -> None:
    prepared = prepare_raw("a@example.org", [], RAW)
    with pytest.raises(InvalidInputError):
        next(transaction(prepared, caps()))


def test_bdat_chunks() -> None:
    body = b"a" * 10 + b"\r\n"
    prepared = prepare_raw("a@example.org", ["b@example.com"], body)
    s = Script(
        transaction(
            prepared, caps("CHUNKING", "PIPELINING"), options=TransactionOptions(chunk_size=5)
        )
    )
    assert isinstance(s.action, Exchange)
    assert [type(c) for c in s.action.frames] == [MailFrom, RcptTo]  # no DATA with BDAT
    s.replies(ok(), ok())
    chunks = []
    while (chunk := bdat_of(s.action)) is not None:
        chunks.append((chunk.data, chunk.last))
        s.answer((CommandReplied(EndOfData(), ok()),))
    assert chunks == [(b"aaaaa", False), (b"aaaaa", False), (b"\r\n", True)]
    assert s.done and s.value.accepted == ("b@example.com",)


def test_bdat_required_but_not_offered() -> None:
    prepared = prepare_raw("a@example.org", ["b@example.com"], RAW)
    with pytest.raises(CapabilityError):
        next(transaction(prepared, caps(), options=TransactionOptions(chunking=True)))


def test_lmtp_per_recipient_results() -> None:
    prepared = prepare_raw("a@example.org", ["b@example.com", "c@example.com"], RAW)
    s = Script(transaction(prepared, caps("PIPELINING"), dialect=Dialect.LMTP))
    s.replies(ok(), ok(), ok(), ok(354, "go"))
    assert body_of(s) is not None
    s.answer(
        (
            CommandReplied(EndOfData(), ok(250, "2.0.0 delivered"), "b@example.com"),
            CommandReplied(EndOfData(), Reply.build(452, "4.2.2 mailbox full"), "c@example.com"),
        )
    )
    assert s.done
    assert s.value.lmtp
    assert s.value.accepted == ("b@example.com",)
    assert s.value.refused["c@example.com"].code == 452


def test_greeting_refused() -> None:
    s = Script(greet())
    assert isinstance(s.action, AwaitGreeting)
    with pytest.raises(GreetingRefused) as info:
        s.answer(GreetingReceived(Reply.build(554, "5.3.2 go away")))
    assert info.value.smtp_code == 554


def test_ehlo_falls_back_to_helo() -> None:
    s = Script(hello("client.example"))
    s.replies(Reply.build(502, "5.5.2 EHLO not implemented"))
    assert isinstance(s.action, Exchange) and isinstance(s.action.frames[0], Helo)
    s.replies(ok(250, "mx.example.com"))
    assert s.done and s.value.esmtp is False


def test_helo_refused_too() -> None:
    s = Script(hello("client.example"))
    s.replies(Reply.build(502, "no"))
    with pytest.raises(HeloRefused):
        s.replies(Reply.build(501, "no"))


def test_starttls_required_but_not_offered_stops_before_anything() -> None:
    flow = negotiate_tls(caps("AUTH PLAIN"), TlsMode.STARTTLS, "client.example")
    with pytest.raises(CapabilityError) as info:
        next(flow)
    assert info.value.extension == "STARTTLS"


def test_starttls_upgrade_re_ehlo_discards_old_caps() -> None:
    s = Script(negotiate_tls(caps("STARTTLS"), TlsMode.STARTTLS, "client.example"))
    s.replies(ok(220, "ready"))
    assert isinstance(s.action, StartTls)
    s.answer(TlsInfo(version="TLSv1.3"))
    s.replies(Reply.build(250, "mx.example.com", "AUTH PLAIN"))
    assert s.done
    new_caps, info = s.value
    assert new_caps.auth_mechanisms == ("PLAIN",)
    assert not new_caps.starttls
    assert info.version == "TLSv1.3"


def test_starttls_refused_required_vs_opportunistic() -> None:
    s = Script(negotiate_tls(caps("STARTTLS"), TlsMode.STARTTLS, "client.example"))
    with pytest.raises(StartTLSRefused):
        s.replies(Reply.build(454, "4.7.0 TLS not available"))
    s = Script(negotiate_tls(caps("STARTTLS"), TlsMode.OPPORTUNISTIC, "client.example"))
    s.replies(Reply.build(454, "4.7.0 TLS not available"))
    assert s.done and s.value[1] is None


def _auth(request: AuthRequest, *lines: str, tls: bool = True) -> Script:
    return Script(
        authenticate(
            request,
            caps(*lines),
            MechanismRegistry.default(),
            host="mx.example.com",
            port=587,
            tls_active=tls,
        )
    )


def test_auth_plain_initial_response() -> None:
    s = _auth(AuthRequest(username="alice", password=Secret("s3cret")), "AUTH PLAIN LOGIN")
    assert isinstance(s.action, Exchange)
    cmd = s.action.frames[0]
    assert isinstance(cmd, Auth) and cmd.mechanism == "PLAIN"
    assert base64.b64decode(cmd.initial_response or b"") == b"\0alice\0s3cret"
    assert b"s3cret" not in cmd.redacted()
    s.replies(ok(235, "2.7.0 ok"))
    assert s.done and s.value == "PLAIN"


def test_auth_refused_over_plaintext() -> None:
    with pytest.raises(AuthError):
        next(
            _auth(
                AuthRequest(username="alice", password=Secret("pw")), "AUTH PLAIN LOGIN", tls=False
            ).flow
        )


def test_auth_round_cap_and_malformed_challenge() -> None:
    s = _auth(
        AuthRequest(username="alice", password=Secret("pw"), mechanisms=("LOGIN",)), "AUTH LOGIN"
    )
    s.replies(ok(334, base64.b64encode(b"Username:").decode()))
    s.replies(ok(334, "!!!not-base64!!!"))
    # A malformed challenge cancels the exchange with "*".
    assert isinstance(s.action, Exchange)
    cancel = s.action.frames[0]
    assert isinstance(cancel, AuthResponse) and cancel.payload == b"*"
    with pytest.raises(AuthError):
        s.replies(Reply.build(501, "5.7.0 cancelled"))


def test_auth_failure_carries_hint() -> None:
    s = _auth(AuthRequest(username="alice", password=Secret("pw")), "AUTH PLAIN")
    with pytest.raises(AuthenticationFailed) as info:
        s.replies(
            Reply.build(
                535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled"
            )
        )
    assert info.value.hint is not None and "disabled" in info.value.hint
    assert "pw" not in str(info.value).split("hint")[0].replace("unsuccessful", "")


def test_oauth_retries_exactly_once_with_a_fresh_token() -> None:
    s = _auth(AuthRequest(username="alice@example.com", use_token=True), "AUTH XOAUTH2")
    assert isinstance(s.action, ObtainToken) and not s.action.force_refresh
    s.answer(AccessToken(Secret("cached-token"), None))
    s.replies(Reply.build(535, "5.7.3 Authentication unsuccessful"))
    assert isinstance(s.action, ObtainToken) and s.action.force_refresh
    s.answer(AccessToken(Secret("fresh-token"), None))
    cmd = s.action.frames[0]
    assert b"fresh-token" in base64.b64decode(cmd.initial_response)
    with pytest.raises(AuthenticationFailed):
        s.replies(Reply.build(535, "5.7.3 Authentication unsuccessful"))  # no third attempt


def test_xoauth2_error_challenge_is_acknowledged_and_surfaced() -> None:
    s = _auth(AuthRequest(username="alice@example.com", use_token=True), "AUTH XOAUTH2")
    s.answer(AccessToken(Secret("tok"), None))
    err = base64.b64encode(
        b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}'
    ).decode()
    s.replies(ok(334, err))
    assert isinstance(s.action, Exchange)
    assert s.action.frames[0].payload == b""  # the empty acknowledgement
    s.replies(Reply.build(535, "5.7.8 Username and Password not accepted"))
    assert isinstance(s.action, ObtainToken) and s.action.force_refresh
    s.answer(AccessToken(Secret("tok2"), None))
    s.replies(ok(334, err))
    with pytest.raises(AuthenticationFailed) as info:
        s.replies(Reply.build(535, "5.7.8 Username and Password not accepted"))
    assert info.value.server_error is not None and info.value.server_error.get("status") == "401"
    assert "tok" not in repr(info.value.server_error)


def test_token_failures_get_token_hints() -> None:
    from mailsdk.auth import CredentialKind
    from mailsdk.flows.authenticate import failure_hint

    reply = Reply.build(535, "5.7.8 Username and Password not accepted")
    password_hint = failure_hint(reply)
    token_hint = failure_hint(reply, CredentialKind.TOKEN)
    assert password_hint is not None and "app password" in password_hint
    assert token_hint is not None and "token" in token_hint and "app password" not in token_hint
    assert failure_hint(Reply.build(535, "no enhanced code")) is not None
    assert failure_hint(Reply.build(454, "no enhanced code")) is None


def test_lmtp_all_refused_after_bdat_names_bdat() -> None:
    prepared = prepare_raw("a@example.org", ["b@example.com"], RAW)
    s = Script(transaction(prepared, caps("CHUNKING", "PIPELINING"), dialect=Dialect.LMTP))
    s.replies(ok(), ok())
    assert bdat_of(s.action) is not None
    s.answer((CommandReplied(EndOfData(), Reply.build(550, "5.1.1 gone"), "b@example.com"),))
    assert isinstance(s.action, Exchange)  # RSET
    with pytest.raises(RecipientsRefused) as info:
        s.replies(ok())
    assert info.value.command == "BDAT"
