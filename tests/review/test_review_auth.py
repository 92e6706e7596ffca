"""Regression tests from the security review of auth, telemetry, compat, _secret and errors."""

from __future__ import annotations

import base64
import os
import smtplib as stdlib_smtplib
import stat
import typing
from collections.abc import Callable
from pathlib import Path

import pytest
from tests._support.scripted_server import Expect, ScriptedServer, Send, WaitClose, ehlo_reply

from mailsdk.auth import (
    OAuthBearerMechanism,
    SaslContext,
    SaslCredentials,
    ScramMechanism,
    XOAuth2Mechanism,
)
from mailsdk.auth.oauth import parse_error_challenge
from mailsdk.compat import smtplib

CONTEXT = SaslContext(host="smtp.example.com", port=587, tls_active=True)
PASSWORD = "pencil-Pa55w0rd"
TOKEN = "ya29.a0Af/Secret+Token_value"


# -- secrets never sit in plain view in an exchange's __dict__ ------------------------------------


@pytest.mark.parametrize("mechanism", [XOAuth2Mechanism(), OAuthBearerMechanism()])
def test_oauth_exchange_vars_never_show_the_token(
    mechanism: XOAuth2Mechanism | OAuthBearerMechanism,
) -> None:
    exchange = mechanism.start(SaslCredentials("user@example.com", TOKEN), CONTEXT)
    assert TOKEN not in repr(vars(exchange))
    assert TOKEN.encode() not in repr(vars(exchange)).encode()
    # ... while the exchange still sends it, and still redacts an echo of it.
    message = exchange.initial_response()
    assert message is not None and TOKEN.encode() in message
    exchange.respond(b'{"status":"401","echo":"' + TOKEN.encode() + b'"}')
    assert exchange.server_error == {"status": "401", "echo": "***"}


def test_scram_exchange_vars_never_show_the_password() -> None:
    exchange = ScramMechanism().start(SaslCredentials("user", PASSWORD), CONTEXT)
    assert PASSWORD not in repr(vars(exchange))
    assert PASSWORD.encode() not in repr(vars(exchange)).encode()


def test_scram_still_computes_the_rfc7677_proof() -> None:
    mechanism = ScramMechanism(nonce_factory=lambda: "rOprNGfwEbeRWgbNEkqO")
    exchange = mechanism.start(SaslCredentials("user", "pencil"), CONTEXT)
    assert exchange.initial_response() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    final = exchange.respond(
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    assert final.endswith(b",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")


# -- the OAuth error JSON cannot smuggle the token past the redaction ------------------------------


@pytest.mark.parametrize(
    "echo",
    [
        TOKEN.replace("/", "\\/"),  # PHP's json_encode escapes "/" by default
        "".join(f"\\u{ord(c):04x}" for c in TOKEN),  # fully \\u-escaped
    ],
)
def test_error_challenge_redacts_a_json_escaped_token(echo: str) -> None:
    challenge = ('{"status":"401","error_description":"bad token ' + echo + '"}').encode()
    parsed = parse_error_challenge("XOAUTH2", challenge, TOKEN)
    assert TOKEN not in repr(parsed)
    assert parsed["error_description"] == "bad token ***"


def test_error_challenge_redacts_the_token_in_keys_and_nested_values() -> None:
    challenge = ('{"' + TOKEN + '":[{"x":"' + TOKEN.replace("/", "\\/") + '"}]}').encode()
    parsed = parse_error_challenge("XOAUTH2", challenge, TOKEN)
    assert TOKEN not in repr(parsed)
    assert parsed == {"***": [{"x": "***"}]}


# -- compat.smtplib: login() moves on when a mechanism cannot encode the credentials ---------------


def test_compat_login_tries_the_next_mechanism_after_a_local_failure(
    scripted: Callable[..., ScriptedServer],
) -> None:
    """smtplib sends "john smith <digest>" for CRAM-MD5, gets 535 and then tries PLAIN.

    The compat module refuses the space locally (RFC 2195 §2) and cancels with "*"; it must then
    go on with PLAIN as smtplib does, not give up with the first mechanism.
    """
    challenge = base64.b64encode(b"<1.2@mx.test>")
    plain = base64.b64encode(b"\0john smith\0s3cret")
    server = scripted(
        [
            Send(b"220 mx.test ESMTP\r\n"),
            Expect(b"ehlo"),
            Send(ehlo_reply("AUTH CRAM-MD5 PLAIN LOGIN")),
            Expect(b"AUTH CRAM-MD5"),
            Send(b"334 " + challenge + b"\r\n"),
            Expect(b"*"),
            Send(b"501 5.7.0 cancelled\r\n"),
            Expect(b"AUTH PLAIN " + plain),
            Send(b"235 2.7.0 ok\r\n"),
            WaitClose(),
        ]
    )
    smtp = smtplib.SMTP(server.host, server.port, local_hostname="c.test", timeout=5)
    try:
        assert smtp.login("john smith", "s3cret") == (235, b"2.7.0 ok")
    finally:
        smtp.close()
    server.check()


def test_compat_login_reports_the_server_refusal_after_local_failures(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(
        [
            Send(b"220 mx.test ESMTP\r\n"),
            Expect(b"ehlo"),
            Send(ehlo_reply("AUTH PLAIN LOGIN")),
            # PLAIN refuses an empty password before sending anything; LOGIN sends it.
            Expect(b"AUTH LOGIN " + base64.b64encode(b"alice")),
            Send(b"334 UGFzc3dvcmQ6\r\n"),
            Expect(b""),
            Send(b"535 5.7.8 no\r\n"),
            WaitClose(),
        ]
    )
    smtp = smtplib.SMTP(server.host, server.port, local_hostname="c.test", timeout=5)
    try:
        with pytest.raises(stdlib_smtplib.SMTPAuthenticationError) as info:
            smtp.login("alice", "")
        assert info.value.smtp_code == 535
    finally:
        smtp.close()
    server.check()


def test_compat_login_with_only_local_failures_raises_smtp_exception(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(
        [
            Send(b"220 mx.test ESMTP\r\n"),
            Expect(b"ehlo"),
            Send(ehlo_reply("AUTH PLAIN")),
            Expect(b"noop"),
            Send(b"250 ok\r\n"),
            WaitClose(),
        ]
    )
    smtp = smtplib.SMTP(server.host, server.port, local_hostname="c.test", timeout=5)
    try:
        with pytest.raises(stdlib_smtplib.SMTPException, match="PLAIN"):
            smtp.login("alice", "")
        assert smtp.noop() == (250, b"ok")
    finally:
        smtp.close()
    server.check()


# -- msal: no private key in the provider's __dict__; the cache file is written safely ------------


def _certificate_credential() -> typing.Any:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    from mailsdk.auth.msal import CertificateCredential

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "review")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return CertificateCredential._build(key, cert)


def test_msal_app_only_provider_vars_never_show_the_private_key() -> None:
    from mailsdk.auth.msal import MsalAppOnlyProvider

    credential = _certificate_credential()
    provider = MsalAppOnlyProvider("contoso.example", "client-id", credential)
    shown = repr(vars(provider))
    assert "PRIVATE KEY" not in shown
    assert credential.private_key_pem.reveal() not in shown


def test_msal_app_only_provider_still_builds_the_certificate_credential(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mailsdk.auth import msal as msal_module

    seen: dict[str, typing.Any] = {}

    def fake_app(client_id: str, *, client_credential: typing.Any, **kwargs: typing.Any) -> object:
        seen["credential"] = client_credential
        return object()

    monkeypatch.setattr(msal_module.msal, "ConfidentialClientApplication", fake_app)
    credential = _certificate_credential()
    provider = msal_module.MsalAppOnlyProvider(
        "contoso.example", "client-id", credential, send_certificate_chain=True
    )
    provider._application()
    assert seen["credential"] == credential.to_msal(send_chain=True)


def test_msal_cache_file_never_writes_through_a_planted_temporary_file(tmp_path: Path) -> None:
    """A predictable temporary name lets another user plant a symlink (or a 0644 file) there."""
    from mailsdk.auth.msal import MsalTokenCacheFile

    target = tmp_path / "cache.json"
    cache = MsalTokenCacheFile(target)
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    # Plant a symlink under every name the old scheme could pick for this process and thread.
    import threading

    planted = tmp_path / f".{target.name}.{os.getpid()}.{threading.get_ident()}"
    planted.symlink_to(victim)
    cache.cache.has_state_changed = True
    assert cache.save()
    assert victim.read_text() == "untouched"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not target.is_symlink()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == sorted(["cache.json", "victim.txt", planted.name])


# -- telemetry: a misbehaving OpenTelemetry component never breaks sending -----------------------


def _otel(
    **options: typing.Any,
) -> tuple[typing.Any, typing.Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from mailsdk.telemetry import OpenTelemetryInstrumentation

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    for processor in options.pop("processors", ()):
        tracer_provider.add_span_processor(processor)
    inst = OpenTelemetryInstrumentation(
        tracer_provider=tracer_provider, meter_provider=MeterProvider(), **options
    )
    return inst, exporter


def _propagator(inject: Callable[..., None]) -> typing.Any:
    from opentelemetry.propagators.textmap import TextMapPropagator

    class Propagator(TextMapPropagator):
        def extract(
            self, carrier: typing.Any, context: typing.Any = None, getter: typing.Any = None
        ) -> typing.Any:
            return context

        def inject(
            self, carrier: typing.Any, context: typing.Any = None, setter: typing.Any = None
        ) -> None:
            inject(carrier)

        @property
        def fields(self) -> set[str]:
            return {"traceparent"}

    return Propagator()


def test_a_raising_propagator_yields_no_trace_headers() -> None:
    def inject(carrier: dict[str, str]) -> None:
        raise RuntimeError("propagator bug")

    inst, _exporter = _otel(propagate=True, propagator=_propagator(inject))
    session = inst.session(server_address="h", server_port=25, transport="tcp", protocol="smtp")
    txn = session.transaction(sender="a@x", recipients=["b@y"], size=None)
    assert dict(txn.trace_headers()) == {}
    session.end()


def test_trace_headers_never_carry_line_breaks_or_bad_names() -> None:
    def inject(carrier: dict[str, str]) -> None:
        carrier["traceparent"] = "00-abc\r\nBcc: evil@example.net"
        carrier["bad name:"] = "x"
        carrier["tracestate"] = "k=v"

    inst, _exporter = _otel(propagate=True, propagator=_propagator(inject))
    session = inst.session(server_address="h", server_port=25, transport="tcp", protocol="smtp")
    txn = session.transaction(sender="a@x", recipients=["b@y"], size=None)
    assert dict(txn.trace_headers()) == {"tracestate": "k=v"}
    session.end()


def _raising_processor(*, on_start: bool = False, on_end: bool = True) -> typing.Any:
    from opentelemetry.sdk.trace import SpanProcessor

    class Raising(SpanProcessor):
        def on_start(self, span: typing.Any, parent_context: typing.Any = None) -> None:
            if on_start:
                raise RuntimeError("processor bug in on_start")

        def on_end(self, span: typing.Any) -> None:
            if on_end:
                raise RuntimeError("processor bug in on_end")

    return Raising()


@pytest.mark.parametrize("on_start", [False, True])
def test_a_raising_span_processor_never_reaches_the_caller(on_start: bool) -> None:
    from mailsdk.errors import ConnectionLost
    from mailsdk.protocol import Reply

    inst, exporter = _otel(processors=[_raising_processor(on_start=on_start)])
    session = inst.session(server_address="h", server_port=25, transport="tcp", protocol="smtp")
    session.connected(peer_address="127.0.0.1", peer_port=25)
    session.capabilities(["PIPELINING"])
    session.authenticated("PLAIN")
    session.command("EHLO").replied(Reply(250, (b"ok",)))
    txn = session.transaction(sender="a@x", recipients=["b@y", "c@y"], size=10)
    assert isinstance(dict(txn.trace_headers()), dict)
    session.command("MAIL").replied(Reply(250, (b"ok",)))
    rcpt = session.command("RCPT")
    rcpt.replied(Reply(550, (b"no",)))
    data = session.command("DATA.END")
    data.recipient_replied("b@y", Reply(250, (b"ok",)))
    data.failed(ConnectionLost("lost"))
    txn.failed(ConnectionLost("lost"))
    second = session.transaction(sender="a@x", recipients=["b@y"], size=None)
    second.finished(accepted=["b@y"], refused={}, size=5, reply=Reply(250, (b"ok",)))
    open_command = session.command("NOOP")
    session.end(ConnectionLost("lost"))
    open_command.replied(Reply(250, (b"ok",)))
    names = sorted(span.name for span in exporter.get_finished_spans())
    if on_start:  # every span failed to start: the hooks fell back to the no-op observers
        assert names == []
        return
    assert names == sorted(
        [
            "SMTP EHLO",
            "SMTP MAIL",
            "SMTP RCPT",
            "SMTP DATA.END",
            "SMTP NOOP",
            "smtp.send",
            "smtp.send",
            "smtp.session",
        ]
    )


def test_a_raising_span_processor_does_not_fail_a_send() -> None:
    from tests.telemetry.client_support import BOB, MESSAGE, SENDER, Otel, Smtpd, plain

    otel = Otel()
    otel.tracer_provider.add_span_processor(_raising_processor())
    try:
        with Smtpd() as server:
            result = plain(server.port, otel).build().sendmail(SENDER, [BOB], MESSAGE)
        assert result.accepted == (BOB,)
        assert len(otel.spans()) == 8  # session, EHLO, send, MAIL, RCPT, DATA, DATA.END, QUIT
    finally:
        otel.shutdown()


# -- token cache: a forced refresh never settles for the token the server just refused -------------


class _MsalLikeProvider:
    """Like msal: a plain call returns its own cached token; only a forced one issues a new one."""

    def __init__(self, clock: Callable[[], float], gate: typing.Any) -> None:
        self.clock = clock
        self.gate = gate
        self.calls: list[bool] = []
        self.serial = 1
        self.expires_at = clock() + 200.0  # inside the default 300 s refresh-ahead window

    async def get_token(self, *, force_refresh: bool = False) -> typing.Any:
        from mailsdk.auth import AccessToken

        self.calls.append(force_refresh)
        if not force_refresh:
            await self.gate.wait()
        else:
            self.serial += 1
            self.expires_at = self.clock() + 3600.0
        return AccessToken(f"token-{self.serial}", self.expires_at)


async def test_forced_refresh_does_not_reuse_a_concurrent_unforced_refetch_of_the_same_token() -> (
    None
):
    import asyncio

    from mailsdk.auth import AsyncCachingTokenProvider

    now = [1_800_000_000.0]
    gate = asyncio.Event()
    gate.set()
    inner = _MsalLikeProvider(lambda: now[0], gate)
    cache = AsyncCachingTokenProvider(inner, clock=lambda: now[0])
    refused = await cache.get_token()  # token-1, then refused by the server with 535
    now[0] += 120.0  # fresh() now wants a refresh ahead of expiry
    gate.clear()
    ahead = asyncio.ensure_future(cache.get_token())  # a plain refresh, held inside msal
    await asyncio.sleep(0)
    forced = asyncio.ensure_future(cache.get_token(force_refresh=True))  # the 535 retry
    await asyncio.sleep(0)
    gate.set()
    assert (await ahead).token == refused.token  # msal served its cached token-1 again
    retry = await forced
    assert retry.token != refused.token, "the retry after 535 got the refused token back"
    assert inner.calls == [False, False, True]


def test_sync_forced_refresh_does_not_reuse_a_concurrent_unforced_refetch_of_the_same_token() -> (
    None
):
    import threading

    from mailsdk.auth import AccessToken, CachingTokenProvider

    now = [1_800_000_000.0]
    entered, release = threading.Event(), threading.Event()
    calls: list[bool] = []
    state = {"serial": 1, "expires": now[0] + 200.0}

    class Provider:
        def get_token(self, *, force_refresh: bool = False) -> AccessToken:
            calls.append(force_refresh)
            if force_refresh:
                state["serial"] += 1
                state["expires"] = now[0] + 3600.0
            else:
                entered.set()
                assert release.wait(10)
            return AccessToken(f"token-{state['serial']}", state["expires"])

    release.set()
    cache = CachingTokenProvider(Provider(), clock=lambda: now[0])
    refused = cache.get_token()
    now[0] += 120.0
    release.clear()
    entered.clear()
    results: dict[str, AccessToken] = {}
    ahead = threading.Thread(target=lambda: results.update(ahead=cache.get_token()))
    ahead.start()
    assert entered.wait(10)
    arrived = threading.Event()
    real_lock = cache._lock

    class Observed:
        def __enter__(self) -> None:
            arrived.set()
            real_lock.acquire()

        def __exit__(self, *exc: object) -> None:
            real_lock.release()

    cache._lock = Observed()  # type: ignore[assignment]
    forced = threading.Thread(
        target=lambda: results.update(forced=cache.get_token(force_refresh=True))
    )
    forced.start()
    assert arrived.wait(10)
    release.set()
    ahead.join(10)
    forced.join(10)
    assert results["ahead"].token == refused.token
    assert results["forced"].token != refused.token
    assert calls == [False, False, True]


# -- a secret that cannot be UTF-8 encoded never rides in an exception's args ---------------------
# (os.environ and sys.argv decode undecodable bytes to lone surrogates: "pa\udcffss")


def _leaks(exc: BaseException, secret: str) -> bool:
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return any(secret in repr(e.args) or secret in str(e) for e in chain)


def test_secret_equality_with_a_lone_surrogate_does_not_raise() -> None:
    from mailsdk import Secret

    assert Secret("pa\udcffss") != Secret("x")
    assert Secret("pa\udcffss") == Secret("pa\udcffss")


@pytest.mark.parametrize("mechanism", [XOAuth2Mechanism(), OAuthBearerMechanism()])
def test_oauth_unencodable_username_is_an_auth_error_without_the_token(
    mechanism: XOAuth2Mechanism | OAuthBearerMechanism,
) -> None:
    from mailsdk.errors import AuthError

    with pytest.raises(AuthError) as info:
        mechanism.start(SaslCredentials("us\udcffer@example.com", TOKEN), CONTEXT)
    assert not _leaks(info.value, TOKEN)


@pytest.mark.parametrize("name", ["LOGIN", "CRAM-MD5"])
def test_unencodable_password_is_refused_up_front_without_the_password(name: str) -> None:
    from mailsdk.auth import CramMD5Mechanism, LoginMechanism
    from mailsdk.errors import AuthError

    secret = "pa\udcffss-w0rd"
    mechanism = LoginMechanism() if name == "LOGIN" else CramMD5Mechanism()
    with pytest.raises(AuthError, match="password") as info:
        mechanism.start(SaslCredentials("user", secret), CONTEXT)
    assert not _leaks(info.value, secret)


def test_instrumentation_never_keeps_a_raw_verb_that_may_be_a_sasl_payload() -> None:
    """``execute("<base64 payload>")`` reaches the observer with the payload as its "verb"."""
    from mailsdk.protocol import Reply

    inst, exporter = _otel()
    payload = base64.b64encode(b"\0alice\0" + PASSWORD.encode()).decode()
    session = inst.session(server_address="h", server_port=25, transport="tcp", protocol="smtp")
    session.command(payload.upper()).replied(Reply(250, (b"ok",)))
    session.end()
    assert payload.upper() not in repr(vars(inst))
    assert next(span.name for span in exporter.get_finished_spans()) == "SMTP _OTHER"


def test_compat_debug_output_redacts_a_hand_made_auth_exchange(
    scripted: Callable[..., ScriptedServer], capsys: pytest.CaptureFixture[str]
) -> None:
    """The usual smtplib XOAUTH2 recipe: ``docmd("AUTH", "XOAUTH2 " + b64)`` and a continuation."""
    token = base64.b64encode(b"user=a@b\x01auth=Bearer " + TOKEN.encode() + b"\x01\x01").decode()
    password = base64.b64encode(b"hunter2-pw").decode()
    server = scripted(
        [
            Send(b"220 mx.test ESMTP\r\n"),
            Expect(b"ehlo"),
            Send(ehlo_reply("AUTH XOAUTH2 LOGIN")),
            Expect(b"AUTH XOAUTH2 " + token.encode()),
            Send(b"334 eyJzdGF0dXMiOiI0MDEifQ==\r\n"),
            Expect(b"\r\n"),
            Send(b"535 5.7.8 no\r\n"),
            Expect(b"auth LOGIN YWxpY2U="),
            Send(b"334 UGFzc3dvcmQ6\r\n"),
            Expect(password.encode()),
            Send(b"235 2.7.0 ok\r\n"),
            Expect(b"noop"),
            Send(b"250 ok\r\n"),
            WaitClose(),
        ]
    )
    smtp = smtplib.SMTP(server.host, server.port, local_hostname="c.test", timeout=5)
    try:
        smtp.ehlo()
        smtp.set_debuglevel(1)
        assert smtp.docmd("AUTH", "XOAUTH2 " + token)[0] == 334
        assert smtp.docmd("")[0] == 535
        assert smtp.docmd("auth LOGIN YWxpY2U=")[0] == 334
        assert smtp.docmd(password)[0] == 235
        assert smtp.noop() == (250, b"ok")
    finally:
        smtp.close()
    server.check()
    err = capsys.readouterr().err
    assert token not in err and password not in err
    assert "AUTH XOAUTH2 ***" in err
    assert "send: 'noop\\r\\n'" in err  # redaction ends with the exchange


def test_async_cache_lock_table_is_safe_across_threads_with_their_own_loops() -> None:
    """Two threads, each running its own event loop, must not corrupt the per-loop lock table."""
    import asyncio
    import threading

    from mailsdk.auth import AccessToken, AsyncCachingTokenProvider

    class Provider:
        async def get_token(self, *, force_refresh: bool = False) -> AccessToken:
            return AccessToken("t", None)

    entered, release = threading.Event(), threading.Event()

    class GatedDict(dict):  # type: ignore[type-arg]
        """Pauses the first iteration after one item, as a thread switch would."""

        gate = True

        def __iter__(self) -> typing.Iterator[typing.Any]:
            it = super().__iter__()
            yield next(it)
            if GatedDict.gate:
                GatedDict.gate = False
                entered.set()
                release.wait(10)
            yield from it

    cache = AsyncCachingTokenProvider(Provider())
    closed = asyncio.new_event_loop()
    closed.close()
    table = GatedDict({closed: asyncio.Lock()})
    cache._locks = table  # type: ignore[assignment]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(cache.get_token(force_refresh=True))
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=run)
    first.start()
    assert entered.wait(10)
    second = threading.Thread(target=run)
    second.start()
    second.join(0.5)  # unguarded, the second thread inserts its loop while the first iterates
    release.set()
    first.join(10)
    second.join(10)
    assert errors == []


def test_msal_cache_file_with_wider_permissions_is_tightened_on_load(tmp_path: Path) -> None:
    """A restored or copied cache (0644) must not stay readable until msal happens to change it."""
    from mailsdk.auth.msal import MsalTokenCacheFile

    path = tmp_path / "cache.json"
    path.write_text("{}")
    path.chmod(0o644)
    MsalTokenCacheFile(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
