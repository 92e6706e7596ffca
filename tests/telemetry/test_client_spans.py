"""End to end: the spans and metrics a real client session exports (docs/architecture.md).

Each scenario runs the blocking ``Client`` and the ``AsyncClient`` (``mode``) against a real
server on 127.0.0.1 (aiosmtpd, or a scripted socket server for PIPELINING and failures), with
the OpenTelemetry SDK providers passed to ``ClientBuilder.with_opentelemetry`` (never the global
ones), and asserts the exact span tree, statuses and attributes docs/telemetry.md promises.
"""

from __future__ import annotations

import base64
import itertools
import ssl
import typing
from collections.abc import Iterator

import pytest
import trustme
from opentelemetry.trace import StatusCode
from tests.telemetry.client_support import (
    BOB,
    CAROL,
    DAVE,
    MESSAGE,
    PASSWORD,
    SENDER,
    USER,
    WRONG_PASSWORD,
    Otel,
    Peer,
    RawServer,
    Smtpd,
    assert_well_formed,
    attrs_of,
    children,
    command_codes,
    connect,
    connect_and_send,
    greet,
    iter_strings,
    lmtp_builder,
    metric_points,
    only,
    plain,
    recipient_events,
    sendmail,
    statuses,
    tls_builder,
    tree,
)

from mailsdk.errors import AuthenticationFailed, ConnectionLost
from mailsdk.telemetry import attributes as names
from mailsdk.transport import TlsSettings

ERROR, UNSET = StatusCode.ERROR, StatusCode.UNSET


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    """Run the scenario with the blocking ``Client`` and with the ``AsyncClient``."""
    return typing.cast("str", request.param)


@pytest.fixture
def otel() -> Iterator[Otel]:
    pipeline = Otel()
    yield pipeline
    pipeline.shutdown()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> TlsSettings:
    return TlsSettings(ca_data=ca.cert_pem.bytes().decode("ascii"))


# -- 1. a plain send ----------------------------------------------------------------------------

PLAIN_TREE = [
    "smtp.session",
    "  SMTP EHLO",
    "  smtp.send",
    "    SMTP MAIL",
    "    SMTP RCPT",
    "    SMTP RCPT",
    "    SMTP DATA",
    "    SMTP DATA.END",
    "  SMTP QUIT",
]


async def test_plain_send_span_tree(mode: str, otel: Otel) -> None:
    with Smtpd() as server:
        result = await sendmail(mode, plain(server.port, otel), [BOB, DAVE])
    assert result.accepted == (BOB, DAVE)
    spans = otel.spans()
    assert tree(spans) == PLAIN_TREE
    session = assert_well_formed(spans)
    assert all(s.status.status_code is UNSET for s in spans), statuses(spans)

    assert attrs_of(session) == {
        names.SERVER_ADDRESS: "127.0.0.1",
        names.SERVER_PORT: server.port,
        names.NETWORK_PEER_ADDRESS: "127.0.0.1",
        names.NETWORK_PEER_PORT: server.port,
        names.NETWORK_TRANSPORT: "tcp",
        names.NETWORK_PROTOCOL_NAME: "smtp",
        names.SMTP_EXTENSIONS: attrs_of(session)[names.SMTP_EXTENSIONS],
    }
    assert "8BITMIME" in attrs_of(session)[names.SMTP_EXTENSIONS]

    top = children(session, spans)
    send = only(top, names.SPAN_SEND)
    commands = [*top[:1], *children(send, spans), *top[2:]]
    assert command_codes(commands) == [
        ("SMTP EHLO", 250),
        ("SMTP MAIL", 250),
        ("SMTP RCPT", 250),
        ("SMTP RCPT", 250),
        ("SMTP DATA", 354),
        ("SMTP DATA.END", 250),
        ("SMTP QUIT", 221),
    ]
    for span in commands:
        verb = span.name.removeprefix(names.COMMAND_SPAN_PREFIX)
        assert attrs_of(span)[names.SMTP_COMMAND] == verb
        assert attrs_of(span)[names.SMTP_PIPELINE_SIZE] == 1  # aiosmtpd: no PIPELINING
    assert attrs_of(commands[5])[names.SMTP_REPLY_ENHANCED_STATUS] == "2.0.0"

    (received,) = server.received
    assert received.content.replace(b"\r\n", b"\n") == MESSAGE.replace(b"\r\n", b"\n")
    assert attrs_of(send) == {
        names.SMTP_RECIPIENT_COUNT: 2,
        names.SMTP_RECIPIENT_DOMAINS: ("example.com",),
        names.SMTP_MESSAGE_SIZE: len(MESSAGE),
        names.SMTP_RECIPIENTS_ACCEPTED: 2,
        names.SMTP_RECIPIENTS_REFUSED: 0,
        names.SMTP_REPLY_CODE: 250,
        names.SMTP_REPLY_ENHANCED_STATUS: "2.0.0",
    }
    assert result.size == len(MESSAGE)


# -- 2. PIPELINING with one refused recipient ---------------------------------------------------


def pipelined_script(peer: Peer) -> None:
    """Advertise PIPELINING; answer MAIL, 3 RCPTs (the 2nd refused) and DATA in one write."""
    greet(peer, "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES")
    group = peer.read_until(b"DATA\r\n").split(b"\r\n")[:-1]
    assert [line.split(b":")[0] for line in group] == [
        b"MAIL FROM",
        b"RCPT TO",
        b"RCPT TO",
        b"RCPT TO",
        b"DATA",
    ], group
    peer.send(
        b"250 2.1.0 sender ok\r\n"
        b"250 2.1.5 ok\r\n"
        b"550 5.1.1 <carol@example.net>: no such user\r\n"
        b"250 2.1.5 ok\r\n"
        b"354 go ahead\r\n"
    )
    peer.read_until(b"\r\n.\r\n")
    peer.send(b"250 2.0.0 queued as PIPE1\r\n")
    assert peer.line() == b"QUIT\r\n"
    peer.send(b"221 2.0.0 bye\r\n")


async def test_pipelined_send_with_refused_recipient(mode: str, otel: Otel) -> None:
    with RawServer(pipelined_script) as server:
        result = await sendmail(mode, plain(server.port, otel), [BOB, CAROL, DAVE])
        server.check()
    assert result.accepted == (BOB, DAVE)
    assert set(result.refused) == {CAROL}

    spans = otel.spans()
    assert tree(spans) == [
        "smtp.session",
        "  SMTP EHLO",
        "  smtp.send",
        "    SMTP MAIL",
        "    SMTP RCPT",
        "    SMTP RCPT",
        "    SMTP RCPT",
        "    SMTP DATA",
        "    SMTP DATA.END",
        "  SMTP QUIT",
    ]
    session = assert_well_formed(spans)
    send = only(spans, names.SPAN_SEND)
    *group, end = children(send, spans)
    assert len(group) == 5
    for span in group:
        assert span.parent is not None and span.parent.span_id == send.context.span_id
        assert attrs_of(span)[names.SMTP_PIPELINE_SIZE] == 5
    for a, b in itertools.permutations(group, 2):
        assert a.start_time is not None and b.end_time is not None
        assert a.start_time < b.end_time, f"{a.name} starts after {b.name} ended"
    assert attrs_of(end)[names.SMTP_PIPELINE_SIZE] == 1

    assert statuses(group) == [
        ("SMTP MAIL", UNSET),
        ("SMTP RCPT", UNSET),
        ("SMTP RCPT", ERROR),
        ("SMTP RCPT", UNSET),
        ("SMTP DATA", UNSET),
    ]
    refused = group[2]
    assert attrs_of(refused)[names.SMTP_REPLY_CODE] == 550
    assert attrs_of(refused)[names.SMTP_REPLY_ENHANCED_STATUS] == "5.1.1"
    assert attrs_of(refused)[names.ERROR_TYPE] == "550"
    assert refused.status.description == "550"
    assert command_codes([*group, end]) == [
        ("SMTP MAIL", 250),
        ("SMTP RCPT", 250),
        ("SMTP RCPT", 550),
        ("SMTP RCPT", 250),
        ("SMTP DATA", 354),
        ("SMTP DATA.END", 250),
    ]

    # Partial acceptance is a result, not a failure.
    assert session.status.status_code is UNSET
    assert send.status.status_code is UNSET
    assert names.ERROR_TYPE not in attrs_of(send)
    assert attrs_of(send)[names.SMTP_RECIPIENT_COUNT] == 3
    assert attrs_of(send)[names.SMTP_RECIPIENTS_ACCEPTED] == 2
    assert attrs_of(send)[names.SMTP_RECIPIENTS_REFUSED] == 1
    assert "PIPELINING" in attrs_of(session)[names.SMTP_EXTENSIONS]


# -- 3. STARTTLS + AUTH -------------------------------------------------------------------------


async def test_starttls_and_auth(
    mode: str, otel: Otel, server_tls: ssl.SSLContext, client_tls: TlsSettings
) -> None:
    with Smtpd(tls_context=server_tls, credentials=(USER, PASSWORD)) as server:
        builder = tls_builder(server.port, otel, client_tls)
        mechanism, result = await connect_and_send(mode, builder, [BOB])
    assert result.accepted == (BOB,)
    assert mechanism == "PLAIN"

    spans = otel.spans()
    assert tree(spans) == [
        "smtp.session",
        "  SMTP EHLO",
        "  SMTP STARTTLS",
        "  SMTP EHLO",
        "  SMTP AUTH",
        "  smtp.send",
        "    SMTP MAIL",
        "    SMTP RCPT",
        "    SMTP DATA",
        "    SMTP DATA.END",
        "  SMTP QUIT",
    ]
    session = assert_well_formed(spans)
    assert all(s.status.status_code is UNSET for s in spans), statuses(spans)
    top = children(session, spans)
    assert command_codes(top[:4]) == [
        ("SMTP EHLO", 250),
        ("SMTP STARTTLS", 220),
        ("SMTP EHLO", 250),
        ("SMTP AUTH", 235),
    ]
    info = attrs_of(session)
    assert info[names.SASL_MECHANISM] == "PLAIN"
    assert str(info[names.TLS_VERSION]).startswith("TLSv1.")
    assert info[names.TLS_CIPHER]
    assert info[names.TLS_IMPLICIT] is False
    # The post-STARTTLS EHLO replaces the first keyword list (AUTH is only offered over TLS).
    assert "AUTH" in info[names.SMTP_EXTENSIONS]
    assert "STARTTLS" not in info[names.SMTP_EXTENSIONS]


# -- 4. a failed AUTH: statuses, and the password nowhere ---------------------------------------


async def test_failed_auth_records_error_and_never_the_password(
    mode: str, otel: Otel, server_tls: ssl.SSLContext, client_tls: TlsSettings
) -> None:
    with Smtpd(tls_context=server_tls, credentials=(USER, PASSWORD)) as server:
        builder = tls_builder(server.port, otel, client_tls, password=WRONG_PASSWORD)
        with pytest.raises(AuthenticationFailed):
            await connect(mode, builder)

    spans = otel.spans()
    assert tree(spans) == [
        "smtp.session",
        "  SMTP EHLO",
        "  SMTP STARTTLS",
        "  SMTP EHLO",
        "  SMTP AUTH",
        "  SMTP QUIT",
    ]
    session = assert_well_formed(spans)
    assert statuses(spans) == [
        ("smtp.session", ERROR),
        ("SMTP EHLO", UNSET),
        ("SMTP STARTTLS", UNSET),
        ("SMTP EHLO", UNSET),
        ("SMTP AUTH", ERROR),
        ("SMTP QUIT", UNSET),
    ]
    auth = only(spans, "SMTP AUTH")
    assert attrs_of(auth)[names.SMTP_REPLY_CODE] == 535
    assert attrs_of(auth)[names.ERROR_TYPE] == "535"
    assert attrs_of(session)[names.ERROR_TYPE] == "mailsdk.errors.AuthenticationFailed"
    assert names.SASL_MECHANISM not in attrs_of(session)
    (event,) = [e for e in session.events if e.name == names.EVENT_EXCEPTION]
    assert dict(event.attributes or {})[names.EXCEPTION_TYPE] == (
        "mailsdk.errors.AuthenticationFailed"
    )

    forbidden = [
        WRONG_PASSWORD,
        base64.b64encode(WRONG_PASSWORD.encode()).decode(),
        base64.b64encode(f"\0{USER}\0{WRONG_PASSWORD}".encode()).decode(),
    ]
    seen: list[str] = []
    for span in spans:
        seen.append(span.name)
        seen.append(span.status.description or "")
        for value in (span.attributes or {}).values():
            seen.extend(iter_strings(value))
        for span_event in span.events:
            seen.append(span_event.name)
            for value in (span_event.attributes or {}).values():
                seen.extend(iter_strings(value))
        seen.append(span.to_json())
    points = metric_points(otel.reader)
    assert points, "no metric was exported"
    for metric_name, data_points in points.items():
        seen.append(metric_name)
        for attributes, _ in data_points:
            for key, value in attributes.items():
                seen.append(key)
                seen.extend(iter_strings(value))
    for secret in forbidden:
        leaks = [text for text in seen if secret in text]
        assert not leaks, f"{secret!r} leaked into telemetry"


# -- 5. a dropped connection --------------------------------------------------------------------


def drop_after_mail(peer: Peer) -> None:
    greet(peer, "8BITMIME")
    assert peer.line().startswith(b"MAIL FROM:")
    # Returning closes the connection without replying.


async def test_dropped_connection(mode: str, otel: Otel) -> None:
    with RawServer(drop_after_mail) as server:
        with pytest.raises(ConnectionLost):
            await sendmail(mode, plain(server.port, otel), [BOB])
        server.check()

    spans = otel.spans()
    assert tree(spans) == [
        "smtp.session",
        "  SMTP EHLO",
        "  smtp.send",
        "    SMTP MAIL",
    ]
    session = assert_well_formed(spans)
    assert statuses(spans) == [
        ("smtp.session", ERROR),
        ("SMTP EHLO", UNSET),
        ("smtp.send", ERROR),
        ("SMTP MAIL", ERROR),
    ]
    lost = "mailsdk.errors.ConnectionLost"
    mail = only(spans, "SMTP MAIL")
    assert names.SMTP_REPLY_CODE not in attrs_of(mail)
    for span in (session, only(spans, names.SPAN_SEND), mail):
        assert attrs_of(span)[names.ERROR_TYPE] == lost, span.name
        assert span.status.description == lost
        (event,) = [e for e in span.events if e.name == names.EVENT_EXCEPTION]
        assert dict(event.attributes or {})[names.EXCEPTION_TYPE] == lost


# -- 6. LMTP: per-recipient replies as events ---------------------------------------------------


async def test_lmtp_per_recipient_events(mode: str, otel: Otel) -> None:
    with Smtpd(lmtp=True, lmtp_fail=[CAROL]) as server:
        result = await sendmail(mode, lmtp_builder(server.port, otel), [BOB, CAROL, DAVE])
    assert result.accepted == (BOB, DAVE)
    assert result.refused[CAROL].code == 452

    spans = otel.spans()
    assert tree(spans) == [
        "smtp.session",
        "  SMTP LHLO",
        "  smtp.send",
        "    SMTP MAIL",
        "    SMTP RCPT",
        "    SMTP RCPT",
        "    SMTP RCPT",
        "    SMTP DATA",
        "    SMTP DATA.END",
        "  SMTP QUIT",
    ]
    session = assert_well_formed(spans)
    assert attrs_of(session)[names.NETWORK_PROTOCOL_NAME] == "lmtp"
    end = only(spans, "SMTP DATA.END")
    assert recipient_events(end) == [
        {
            names.SMTP_REPLY_CODE: 250,
            names.SMTP_REPLY_ENHANCED_STATUS: "2.0.0",
            names.SMTP_RECIPIENT_INDEX: 0,
        },
        {
            names.SMTP_REPLY_CODE: 452,
            names.SMTP_REPLY_ENHANCED_STATUS: "4.2.2",
            names.SMTP_RECIPIENT_INDEX: 1,
        },
        {
            names.SMTP_REPLY_CODE: 250,
            names.SMTP_REPLY_ENHANCED_STATUS: "2.0.0",
            names.SMTP_RECIPIENT_INDEX: 2,
        },
    ]
    # The span ends with the last per-recipient reply.
    assert attrs_of(end)[names.SMTP_REPLY_CODE] == 250
    assert end.status.status_code is UNSET
    send = only(spans, names.SPAN_SEND)
    assert send.status.status_code is UNSET
    assert attrs_of(send)[names.SMTP_RECIPIENTS_ACCEPTED] == 2
    assert attrs_of(send)[names.SMTP_RECIPIENTS_REFUSED] == 1
    assert session.status.status_code is UNSET


async def test_lmtp_last_recipient_failing_is_still_a_partial_success(
    mode: str, otel: Otel
) -> None:
    with Smtpd(lmtp=True, lmtp_fail=[DAVE]) as server:
        builder = lmtp_builder(server.port, otel, record_addresses=True)
        result = await sendmail(mode, builder, [BOB, DAVE])
    assert result.accepted == (BOB,)
    assert set(result.refused) == {DAVE}

    spans = otel.spans()
    end = only(spans, "SMTP DATA.END")
    events = recipient_events(end)
    assert [e[names.SMTP_RECIPIENT_ADDRESS] for e in events] == [BOB, DAVE]
    assert [e[names.SMTP_REPLY_CODE] for e in events] == [250, 452]
    # DATA.END ends with the last per-recipient reply, and a 452 makes a command span ERROR.
    assert attrs_of(end)[names.SMTP_REPLY_CODE] == 452
    assert end.status.status_code is ERROR
    send = only(spans, names.SPAN_SEND)
    # Partial acceptance leaves smtp.send UNSET (docs/telemetry.md "Statuses"), even when the
    # last LMTP reply is the refusal: there is no single final reply in LMTP.
    assert send.status.status_code is UNSET, attrs_of(send).get(names.ERROR_TYPE)
    assert attrs_of(send)[names.SMTP_RECIPIENTS_ACCEPTED] == 1
    assert attrs_of(send)[names.SMTP_RECIPIENTS_REFUSED_ADDRESSES] == (DAVE,)
    messages = {
        a[names.OUTCOME]: p.value for a, p in metric_points(otel.reader)[names.METRIC_MESSAGES]
    }
    assert messages == {names.OUTCOME_ACCEPTED: 1}


# -- 7. metrics ---------------------------------------------------------------------------------


async def test_metrics_after_plain_and_partial_sends(mode: str, otel: Otel) -> None:
    with Smtpd(refuse=[CAROL]) as server:
        first = await sendmail(mode, plain(server.port, otel), [BOB, DAVE])
        second = await sendmail(mode, plain(server.port, otel), [BOB, CAROL, DAVE])
    assert set(second.refused) == {CAROL}
    points = metric_points(otel.reader)

    durations = {
        (a[names.SMTP_COMMAND], a[names.SMTP_REPLY_CLASS]): p
        for a, p in points[names.METRIC_COMMAND_DURATION]
    }
    assert {key: p.count for key, p in durations.items()} == {
        ("EHLO", "2xx"): 2,
        ("MAIL", "2xx"): 2,
        ("RCPT", "2xx"): 4,
        ("RCPT", "5xx"): 1,
        ("DATA", "3xx"): 2,
        ("DATA.END", "2xx"): 2,
        ("QUIT", "2xx"): 2,
    }
    assert all(p.sum >= 0 and p.min >= 0 for p in durations.values())
    for attributes, _ in points[names.METRIC_COMMAND_DURATION]:
        assert set(attributes) == {names.SMTP_COMMAND, names.SMTP_REPLY_CLASS}

    messages = {a[names.OUTCOME]: p.value for a, p in points[names.METRIC_MESSAGES]}
    assert messages == {names.OUTCOME_ACCEPTED: 2}
    recipients = {a[names.OUTCOME]: p.value for a, p in points[names.METRIC_RECIPIENTS]}
    assert recipients == {names.OUTCOME_ACCEPTED: 4, names.OUTCOME_REFUSED: 1}
    ((size_attributes, size),) = points[names.METRIC_MESSAGE_SIZE]
    assert size_attributes == {names.OUTCOME: names.OUTCOME_ACCEPTED}
    assert size.count == 2
    assert size.sum == first.size + second.size
    # Metric attributes never carry addresses or domains.
    for data_points in points.values():
        for attributes, _ in data_points:
            for value in attributes.values():
                assert "@" not in str(value) and "example" not in str(value)


# -- 8. addresses and trace-context propagation -------------------------------------------------


ADDRESSES = (SENDER, BOB, DAVE)


async def test_addresses_absent_by_default(mode: str, otel: Otel) -> None:
    with Smtpd() as server:
        await sendmail(mode, plain(server.port, otel), [BOB, DAVE])
        (received,) = server.received
    spans = otel.spans()
    assert len(spans) == len(PLAIN_TREE)
    exported = "\n".join(span.to_json() for span in spans)
    for address in ADDRESSES:
        assert address not in exported
        assert address.split("@")[0] not in exported
    assert attrs_of(only(spans, names.SPAN_SEND))[names.SMTP_RECIPIENT_DOMAINS] == ("example.com",)
    assert b"traceparent" not in received.content.lower()


async def test_addresses_recorded_when_opted_in(mode: str, otel: Otel) -> None:
    with Smtpd(refuse=[CAROL]) as server:
        builder = plain(server.port, otel, record_addresses=True)
        await sendmail(mode, builder, [BOB, CAROL, DAVE])
    send = attrs_of(only(otel.spans(), names.SPAN_SEND))
    assert send[names.SMTP_SENDER] == SENDER
    assert send[names.SMTP_RECIPIENTS_ADDRESSES] == (BOB, CAROL, DAVE)
    assert send[names.SMTP_RECIPIENTS_REFUSED_ADDRESSES] == (CAROL,)


async def test_propagate_adds_traceparent_of_the_send_span(mode: str, otel: Otel) -> None:
    with Smtpd() as server:
        await sendmail(mode, plain(server.port, otel, propagate=True), [BOB])
        (received,) = server.received
    headers = [
        line.split(b":", 1)
        for line in received.content.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        if b":" in line
    ]
    values = [v.strip().decode("ascii") for k, v in headers if k.lower() == b"traceparent"]
    assert len(values) == 1, received.content
    version, trace_id, span_id, flags = values[0].split("-")
    send = only(otel.spans(), names.SPAN_SEND)
    assert version == "00"
    assert int(trace_id, 16) == send.context.trace_id
    assert int(span_id, 16) == send.context.span_id
    assert int(flags, 16) == send.context.trace_flags
    assert int(flags, 16) & 0x01  # sampled
    # The rest of the message arrived unchanged after the added header.
    assert received.content.endswith(b"Hello, spans.\r\n")
