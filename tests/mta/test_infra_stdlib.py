"""Proves the private Postfix + Dovecot infrastructure with the standard library's smtplib.

Layer: tests (marker ``mta``). Imports smtplib, scramp and ``tests._support.mta`` only, never
mailsdk: these tests pin down what the real servers do, so that when the suite switches to the
mailsdk clients a failure points at the client, not at the infrastructure.
"""

from __future__ import annotations

import base64
import json
import os
import smtplib
import ssl
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import scramp
from tests._support.mta import (
    Credentials,
    MtaEnvironment,
    as_sent,
    build_message,
    start_mta,
    strip_trace_headers,
)

pytestmark = pytest.mark.mta

TIMEOUT = 10.0  # every smtplib socket operation
CLIENT_NAME = "client.test"  # never let smtplib call socket.getfqdn()
SENDER = "sender@client.test"
ESMTP_KEYWORDS = ("pipelining", "size", "enhancedstatuscodes", "8bitmime", "dsn", "smtputf8")
ALL_MECHANISMS = {
    "PLAIN",
    "LOGIN",
    "CRAM-MD5",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "XOAUTH2",
    "OAUTHBEARER",
}
# A body that catches dot-stuffing, 8-bit and line-ending mistakes on the way to the Maildir.
TRICKY_BODY = (
    b"First line.\r\n"
    b".A line starting with a dot\r\n"
    b"..two dots\r\n"
    b".\r\n"
    b"8-bit: caf\xc3\xa9 \xe2\x9c\x93\r\n"
    b"\r\n"
    b"Trailing spaces   \r\n"
)


@contextmanager
def smtp(env: MtaEnvironment, *, starttls: bool = False) -> Iterator[smtplib.SMTP]:
    """Connect to the STARTTLS listener (and upgrade), EHLO done."""
    with smtplib.SMTP(env.host, env.smtp_port, local_hostname=CLIENT_NAME, timeout=TIMEOUT) as s:
        s.ehlo()
        if starttls:
            s.starttls(context=env.client_context())
            s.ehlo()
        yield s


@contextmanager
def smtps(env: MtaEnvironment) -> Iterator[smtplib.SMTP_SSL]:
    """Connect to the implicit-TLS listener, EHLO done."""
    with smtplib.SMTP_SSL(
        env.host,
        env.smtps_port,
        local_hostname=CLIENT_NAME,
        timeout=TIMEOUT,
        context=env.client_context(),
    ) as s:
        s.ehlo()
        yield s


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def auth(
    s: smtplib.SMTP, mechanism: str, authobject: Callable[..., str | None]
) -> tuple[int, bytes]:
    """``s.auth`` (typeshed wants an overloaded callable; any of ours will do)."""
    return s.auth(mechanism, typing.cast(typing.Any, authobject))


def error_text(exc: smtplib.SMTPResponseException) -> bytes:
    return exc.smtp_error if isinstance(exc.smtp_error, bytes) else exc.smtp_error.encode()


# --- listeners and capabilities ------------------------------------------------------------


def test_plain_listener_offers_extensions_but_no_auth_before_tls(mta_env: MtaEnvironment) -> None:
    with smtp(mta_env) as s:
        features = s.esmtp_features
        for keyword in (*ESMTP_KEYWORDS, "chunking", "starttls"):
            assert keyword in features, (keyword, features)
        assert features["size"] == str(mta_env.message_size_limit)
        assert "auth" not in features
        # Not even when the client tries anyway (smtpd_tls_auth_only).
        code, text = s.docmd("AUTH", "PLAIN " + b64(b"\0alice@example.test\0x"))
        assert (code, text[:5]) == (503, b"5.5.1")


def test_starttls_verifies_against_the_ca_and_then_offers_auth(mta_env: MtaEnvironment) -> None:
    with smtp(mta_env, starttls=True) as s:
        assert isinstance(s.sock, ssl.SSLSocket)
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        features = s.esmtp_features
        assert "starttls" not in features
        assert set(features["auth"].upper().split()) == ALL_MECHANISMS
        for keyword in (*ESMTP_KEYWORDS, "chunking"):
            assert keyword in features


def test_starttls_refuses_an_untrusting_client(mta_env: MtaEnvironment) -> None:
    with smtplib.SMTP(
        mta_env.host, mta_env.smtp_port, local_hostname=CLIENT_NAME, timeout=TIMEOUT
    ) as s:
        s.ehlo()
        with pytest.raises(ssl.SSLCertVerificationError):
            s.starttls(context=ssl.create_default_context())  # system CAs: ours is unknown
        s.close()


def test_implicit_tls_listener(mta_env: MtaEnvironment, alice: Credentials) -> None:
    with smtps(mta_env) as s:
        features = s.esmtp_features
        assert "starttls" not in features
        assert set(features["auth"].upper().split()) == ALL_MECHANISMS
        assert s.login(alice.username, alice.password)[0] == 235


# --- password mechanisms -------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
@pytest.mark.parametrize("right", [True, False], ids=["right-password", "wrong-password"])
def test_password_mechanisms(
    mta_env: MtaEnvironment, alice: Credentials, mechanism: str, right: bool
) -> None:
    with smtp(mta_env, starttls=True) as s:
        s.user, s.password = alice.username, alice.password if right else "wrong-password"
        authobject: dict[str, Callable[..., str | None]] = {
            "PLAIN": s.auth_plain,
            "LOGIN": s.auth_login,
            "CRAM-MD5": s.auth_cram_md5,
        }
        if not right:
            with pytest.raises(smtplib.SMTPAuthenticationError) as excinfo:
                auth(s, mechanism, authobject[mechanism])
            assert excinfo.value.smtp_code == 535
            assert error_text(excinfo.value).startswith(b"5.7.8")
            return
        assert auth(s, mechanism, authobject[mechanism]) == (
            235,
            b"2.7.0 Authentication successful",
        )
        # Authenticated clients may relay (other domains are discarded by the test instance).
        assert s.mail(SENDER)[0] == 250
        assert s.rcpt("someone@elsewhere.test")[0] == 250


def scram_authobject(client: scramp.ScramClient, seen: list[str]) -> Callable[..., str]:
    """An smtplib authobject running a SCRAM exchange (RFC 5802 §3) with scramp."""

    def respond(challenge: bytes | None = None) -> str:
        if challenge is None:
            return str(client.get_client_first())
        text = challenge.decode("ascii")
        seen.append(text)
        if text.startswith("r="):
            client.set_server_first(text)
            return str(client.get_client_final())
        client.set_server_final(text)  # raises if the server signature is wrong
        return ""

    return respond


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
@pytest.mark.parametrize("right", [True, False], ids=["right-password", "wrong-password"])
def test_scram_mechanisms(
    mta_env: MtaEnvironment, alice: Credentials, mechanism: str, right: bool
) -> None:
    password = alice.password if right else "wrong-password"
    client = scramp.ScramClient([mechanism], alice.username, password)
    seen: list[str] = []
    with smtp(mta_env, starttls=True) as s:
        authobject = scram_authobject(client, seen)
        if right:
            assert auth(s, mechanism, authobject)[0] == 235
            # The server-final message (v=...) came as a 334 challenge and scramp verified it.
            assert seen[-1].startswith("v=")
        else:
            with pytest.raises(smtplib.SMTPAuthenticationError) as excinfo:
                auth(s, mechanism, authobject)
            assert excinfo.value.smtp_code == 535


# --- OAuth (token introspection) -----------------------------------------------------------


def oauth_initial_response(mechanism: str, user: str, token: str) -> str:
    if mechanism == "XOAUTH2":  # Google/Microsoft XOAUTH2 format
        return f"user={user}\x01auth=Bearer {token}\x01\x01"
    return f"n,a={user},\x01auth=Bearer {token}\x01\x01"  # RFC 7628 §3.1 OAUTHBEARER


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
@pytest.mark.parametrize(
    ("user", "token", "accepted"),
    [
        ("alice", "good-token", True),
        ("alice", "wrong-token", False),
        ("bob", "good-token", False),  # alice's token, presented for bob
    ],
    ids=["right-token", "wrong-token", "other-users-token"],
)
def test_oauth_mechanisms(
    mta_env: MtaEnvironment, mechanism: str, user: str, token: str, accepted: bool
) -> None:
    username = mta_env.users[user].username
    challenges: list[bytes] = []

    def authobject(challenge: bytes | None = None) -> str:
        if challenge is None:
            return oauth_initial_response(mechanism, username, token)
        challenges.append(challenge)  # the error JSON (RFC 7628 §3.2.2); answer with empty
        return "\x01" if mechanism == "OAUTHBEARER" else ""

    before = mta_env.introspection.requests
    with smtp(mta_env, starttls=True) as s:
        if accepted:
            assert auth(s, mechanism, authobject) == (235, b"2.7.0 Authentication successful")
            assert challenges == []
        else:
            with pytest.raises(smtplib.SMTPAuthenticationError) as excinfo:
                auth(s, mechanism, authobject)
            assert excinfo.value.smtp_code == 535
            assert len(challenges) == 1
            assert "status" in json.loads(challenges[0])
    assert mta_env.introspection.requests > before  # Dovecot really asked the endpoint


# --- recipients, relaying, size ------------------------------------------------------------


def test_unknown_recipient_is_refused_with_550_5_1_1(mta_env: MtaEnvironment) -> None:
    with smtp(mta_env) as s:
        assert s.mail(SENDER)[0] == 250
        code, text = s.rcpt("nobody@example.test")
        assert code == 550
        assert text.startswith(b"5.1.1 ")
        assert s.rcpt("alice@example.test")[0] == 250  # the transaction goes on


def test_relaying_needs_auth(mta_env: MtaEnvironment) -> None:
    with smtp(mta_env, starttls=True) as s:  # TLS alone is not enough
        assert s.mail(SENDER)[0] == 250
        code, text = s.rcpt("someone@elsewhere.test")
        assert (code, text[:5]) == (554, b"5.7.1")


def test_size_declared_over_the_limit_is_refused(mta_env: MtaEnvironment) -> None:
    with smtp(mta_env) as s:
        code, text = s.mail(SENDER, [f"SIZE={mta_env.message_size_limit + 1}"])
        assert (code, text[:5]) == (552, b"5.3.4")
        assert s.mail(SENDER, [f"SIZE={mta_env.message_size_limit // 2}"])[0] == 250


def test_message_over_the_limit_is_refused_after_data(mta_env: MtaEnvironment) -> None:
    message, _ = build_message("alice@example.test", body=b"x" * 998 + b"\r\n")
    # Postfix counts the queue file (LF line ends, record overhead): go well past the limit.
    message += (b"y" * 998 + b"\r\n") * (mta_env.message_size_limit // 900)
    with smtp(mta_env) as s:
        assert s.mail(SENDER)[0] == 250
        assert s.rcpt("alice@example.test")[0] == 250
        code, text = s.data(message)  # smtplib returns (not raises) the end-of-data reply
        assert (code, text[:5]) == (552, b"5.3.4")


# --- delivery into the Maildir -------------------------------------------------------------


def test_data_delivery_is_byte_for_byte(mta_env: MtaEnvironment) -> None:
    message, message_id = build_message("alice@example.test", body=TRICKY_BODY)
    with smtp(mta_env, starttls=True) as s:
        refused = s.sendmail(SENDER, ["alice@example.test"], message, ["BODY=8BITMIME"])
        assert refused == {}
    stored = mta_env.wait_for_message("alice", message_id)
    assert stored.startswith(b"Return-Path: <sender@client.test>\n")
    assert b"\nDelivered-To: alice@example.test\n" in stored
    assert strip_trace_headers(stored).startswith(b"From: ")
    assert as_sent(stored) == message


def test_smtputf8_delivery(mta_env: MtaEnvironment) -> None:
    message, message_id = build_message(
        "bob@example.test", subject="Grüße ✓", body="Unicode body: ½ ✓ 日本\r\n".encode()
    )
    with smtp(mta_env, starttls=True) as s:
        refused = s.sendmail(SENDER, ["bob@example.test"], message, ["SMTPUTF8", "BODY=8BITMIME"])
        assert refused == {}
    stored = mta_env.wait_for_message("bob", message_id)
    assert as_sent(stored) == message
    assert b"Subject: Gr\xc3\xbc\xc3\x9fe \xe2\x9c\x93\n" in stored


def test_pipelined_transaction(mta_env: MtaEnvironment) -> None:
    """MAIL, RCPTs and DATA in one write (RFC 2920 §3.1); every reply still comes in order."""
    message, message_id = build_message("carol@example.test")
    with smtp(mta_env) as s:
        s.send(
            f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<carol@example.test>\r\n"
            "RCPT TO:<nobody@example.test>\r\nDATA\r\n"
        )
        codes = [s.getreply()[0] for _ in range(4)]
        assert codes == [250, 250, 550, 354]
        s.send(message + b".\r\n")
        assert s.getreply()[0] == 250
    assert as_sent(mta_env.wait_for_message("carol", message_id)) == message


def test_chunking_bdat_delivery_is_byte_for_byte(mta_env: MtaEnvironment) -> None:
    """BDAT (RFC 3030 §2): no dot-stuffing, so dots and bare content must arrive untouched."""
    message, message_id = build_message("alice@example.test", body=TRICKY_BODY)
    first, last = message[:50], message[50:]
    with smtp(mta_env, starttls=True) as s:
        assert s.mail(SENDER, ["BODY=8BITMIME"])[0] == 250
        assert s.rcpt("alice@example.test")[0] == 250
        s.send(b"BDAT %d\r\n" % len(first) + first)
        assert s.getreply()[0] == 250
        s.send(b"BDAT %d LAST\r\n" % len(last) + last)
        code, text = s.getreply()
        assert (code, text[:5]) == (250, b"2.0.0")
    assert as_sent(mta_env.wait_for_message("alice", message_id)) == message


def test_dsn_parameters_and_success_notification(mta_env: MtaEnvironment) -> None:
    """RET/ENVID/NOTIFY/ORCPT (RFC 3461) accepted; NOTIFY=SUCCESS yields a report to bob."""
    envid = "envid-" + os.urandom(6).hex()
    message, message_id = build_message("alice@example.test", sender="bob@example.test")
    with smtp(mta_env) as s:
        assert s.mail("bob@example.test", ["RET=HDRS", f"ENVID={envid}"])[0] == 250
        notify = ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;alice@example.test"]
        assert s.rcpt("alice@example.test", notify)[0] == 250
        assert s.data(message)[0] == 250
    assert as_sent(mta_env.wait_for_message("alice", message_id)) == message
    report = mta_env.wait_for_message("bob", envid.encode())
    assert b"multipart/report" in report
    assert b"Action: delivered" in report


# --- LMTP ----------------------------------------------------------------------------------


@contextmanager
def lmtp(env: MtaEnvironment, transport: str) -> Iterator[smtplib.LMTP]:
    if transport == "tcp":
        client = smtplib.LMTP(env.host, env.lmtp_port, local_hostname=CLIENT_NAME, timeout=TIMEOUT)
    else:
        client = smtplib.LMTP(str(env.lmtp_socket), local_hostname=CLIENT_NAME, timeout=TIMEOUT)
    with client:
        yield client


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_lmtp_two_recipients_get_one_reply_each(mta_env: MtaEnvironment, transport: str) -> None:
    """RFC 2033 §4.2: after the final dot, one reply per accepted RCPT, in RCPT order."""
    message, message_id = build_message("alice@example.test, bob@example.test", body=TRICKY_BODY)
    with lmtp(mta_env, transport) as client:
        code, _ = client.ehlo(CLIENT_NAME)  # smtplib.LMTP sends LHLO here
        assert code == 250
        for keyword in ("pipelining", "chunking", "8bitmime", "enhancedstatuscodes"):
            assert keyword in client.esmtp_features
        assert client.mail(SENDER, ["BODY=8BITMIME"])[0] == 250
        assert client.rcpt("alice@example.test")[0] == 250
        code, text = client.rcpt("nobody@example.test")
        assert (code, text[:5]) == (550, b"5.1.1")
        assert client.rcpt("bob@example.test")[0] == 250
        first = client.data(message)
        second = client.getreply()
        assert first[0] == 250 and first[1].startswith(b"2.0.0 <alice@example.test>")
        assert second[0] == 250 and second[1].startswith(b"2.0.0 <bob@example.test>")
    # LMTP delivery is synchronous: the Maildirs hold the message once the replies are in.
    for user in ("alice", "bob"):
        stored = mta_env.wait_for_message(user, message_id, timeout=1.0)
        assert as_sent(stored) == message


# --- lifecycle -----------------------------------------------------------------------------


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline:
                pids.append(int(proc.name))
    return pids


def test_a_second_instance_starts_and_leaves_nothing_behind() -> None:
    """Instances are independent, and stopping one kills every process and removes its dir."""
    with start_mta() as env:
        root = env.root
        # Dovecot children carry the instance name in their title, Postfix's master its -c path.
        assert _processes_mentioning(root.name)
        with smtp(env) as s:
            assert s.noop()[0] == 250
    assert not root.exists()
    assert _processes_mentioning(root.name) == []
