"""``mailsdk probe host[:port]``: what a server offers, without sending anything.

Layer: L8 command line. Reports the greeting, the EHLO extensions (typed values) before and after
STARTTLS, the TLS version and cipher, the certificate (subject, issuer, names, expiry) and whether
it verifies, the AUTH mechanisms and SIZE. It never authenticates and never sends a message.

The certificate is captured through a client ``ssl.SSLContext`` whose socket class records the
peer certificate after the handshake (a stdlib hook), so the probe uses the real client stack.
When verification fails, the probe says why and connects once more without verification to show
the certificate that failed.
"""

from __future__ import annotations

import datetime
import logging
import ssl
import typing

import attrs
import click
from cryptography import x509

from mailsdk.builder import ClientBuilder
from mailsdk.cli._connect import builder_for
from mailsdk.cli._exit import ExitCode
from mailsdk.cli._options import Common, command_body, common_options, connection_options
from mailsdk.cli._terminal import emit_json, safe
from mailsdk.errors import TLSError
from mailsdk.esmtp import Capabilities
from mailsdk.transport import TlsSettings

__all__ = ["ProbeReport", "probe", "probe_command"]


class _CertificateLog:
    """Collects the DER certificate of every TLS handshake made with one context."""

    def __init__(self) -> None:
        self.der: list[bytes] = []

    def context(self, *, verify: bool, ca_file: str | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        log = self.der

        class RecordingSocket(ssl.SSLSocket):
            def do_handshake(self, block: bool = False) -> None:
                super().do_handshake()
                der = self.getpeercert(binary_form=True)
                if der:
                    log.append(der)

        ctx.sslsocket_class = RecordingSocket
        return ctx


class _GreetingLog(logging.Handler):
    """Keeps the first server line of the protocol log: the greeting."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.greeting: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.greeting is None and message.startswith("S: "):
            self.greeting = message[3:]


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, frozenset | set):
        return sorted(str(v) for v in typing.cast("set[object]", value))
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in typing.cast("list[object]", value)]
    if isinstance(value, dict):
        pairs = typing.cast("dict[object, object]", value)
        return {str(k): _jsonable(v) for k, v in pairs.items()}
    if attrs.has(type(value)):
        return {k: _jsonable(v) for k, v in attrs.asdict(value, recurse=False).items()}  # type: ignore[arg-type]
    return str(value)


def _extensions(caps: Capabilities) -> dict[str, object]:
    return {kw: _jsonable(caps.get(kw)) for kw in caps.keywords}


def _certificate(der: bytes) -> dict[str, object]:
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)] + [
            str(ip) for ip in san.get_values_for_type(x509.IPAddress)
        ]
    except x509.ExtensionNotFound:
        names = []
    expires = cert.not_valid_after_utc
    days = (expires - datetime.datetime.now(datetime.UTC)).days
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "names": names,
        "not_after": expires.isoformat(),
        "days_left": days,
    }


@attrs.define
class ProbeReport:
    """What the probe found (the ``--json`` document is :meth:`to_json`)."""

    server: str
    tls_mode: str
    greeting: str | None = None
    server_name: str | None = None
    before_tls: dict[str, object] | None = None
    after_tls: dict[str, object] | None = None
    tls_version: str | None = None
    cipher: str | None = None
    certificate: dict[str, object] | None = None
    verified: bool | None = None
    verify_error: str | None = None

    def to_json(self) -> dict[str, object]:
        """The report as a JSON-ready dict."""
        return attrs.asdict(self)

    @property
    def final(self) -> dict[str, object]:
        """The extensions of the last EHLO (after TLS when there was TLS)."""
        return self.after_tls if self.after_tls is not None else (self.before_tls or {})


def _run(builder: ClientBuilder, report: ProbeReport, ca_file: str | None, verify: bool) -> None:
    certs = _CertificateLog()
    context = certs.context(verify=verify, ca_file=ca_file)
    implicit = report.tls_mode == "implicit"
    first = "implicit" if implicit else "none"
    b = builder.with_tls(first, settings=TlsSettings(ssl_context=context))
    greeting = _GreetingLog()
    wire = logging.getLogger("mailsdk.wire")
    previous = wire.level
    wire.addHandler(greeting)
    wire.setLevel(logging.DEBUG)
    try:
        with b.build().connect() as session:
            report.greeting = greeting.greeting
            report.server_name = session.capabilities.server_name
            if implicit:
                report.after_tls = _extensions(session.capabilities)
            else:
                report.before_tls = _extensions(session.capabilities)
                if report.tls_mode != "none" and session.capabilities.starttls:
                    try:
                        session.starttls()
                    finally:
                        if certs.der:
                            report.certificate = _certificate(certs.der[-1])
                    report.after_tls = _extensions(session.capabilities)
            if session.tls is not None:
                report.tls_version = session.tls.version
                report.cipher = session.tls.cipher
            if certs.der:
                report.certificate = _certificate(certs.der[-1])
    finally:
        wire.removeHandler(greeting)
        wire.setLevel(previous)


def probe(builder: ClientBuilder, tls_mode: str, ca_file: str | None) -> ProbeReport:
    """Probe the server ``builder`` points at; see the module docstring.

    Raises:
        MailError: the server could not be reached or broke the protocol.
    """
    report = ProbeReport(server=builder.endpoint.describe(), tls_mode=tls_mode)
    try:
        _run(builder, report, ca_file, verify=True)
        report.verified = None if report.tls_version is None else True
    except TLSError as exc:
        report.verified = False
        report.verify_error = str(exc)
        fresh = ProbeReport(server=report.server, tls_mode=tls_mode)
        _run(builder, fresh, ca_file, verify=False)
        fresh.verified, fresh.verify_error = False, report.verify_error
        report = fresh
    return report


def _show(report: ProbeReport) -> None:
    echo = click.echo
    echo(f"server       {safe(report.server)} (tls: {report.tls_mode})")
    echo(f"greeting     {safe(report.greeting or '')}")
    if report.before_tls is not None:
        mechs: object = report.before_tls.get("AUTH") or []
        echo(f"before TLS   {' '.join(safe(k) for k in report.before_tls)}")
        echo(f"  AUTH       {' '.join(safe(m) for m in typing.cast('list[str]', mechs)) or '-'}")
    if report.tls_version is not None:
        echo(f"TLS          {safe(report.tls_version)} {safe(report.cipher or '')}")
    cert = report.certificate
    if cert is not None:
        echo(f"certificate  subject {safe(cert['subject'])}")
        echo(f"             issuer  {safe(cert['issuer'])}")
        names = typing.cast("list[str]", cert["names"])
        echo(f"             names   {', '.join(safe(n) for n in names) or '-'}")
        echo(f"             expires {safe(cert['not_after'])} ({cert['days_left']} days)")
    if report.verified is True:
        echo("verified     yes")
    elif report.verified is False:
        echo(f"verified     NO: {safe(report.verify_error)}")
    if report.after_tls is not None:
        mechs = report.after_tls.get("AUTH") or []
        echo(f"after TLS    {' '.join(safe(k) for k in report.after_tls)}")
        echo(f"  AUTH       {' '.join(safe(m) for m in typing.cast('list[str]', mechs)) or '-'}")
    size = report.final.get("SIZE")
    echo(f"SIZE         {safe(size) if size is not None else 'not advertised'}")


@click.command("probe")
@click.argument("target", metavar="HOST[:PORT]", required=False)
@common_options
@connection_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@command_body
def probe_command(common: Common, target: str | None) -> int:
    """Show what a server offers: greeting, extensions, TLS, certificate, AUTH, SIZE.

    Exit status 2 when the certificate does not verify, 0 otherwise.
    """
    connection = attrs.evolve(common.connection, server=target or common.connection.server)
    builder = builder_for(connection, common.profile(), authenticate=False)
    if connection.tls is not None:
        mode = connection.tls
    else:
        mode = builder.tls_mode.value if builder.tls_mode is not None else "starttls"
        if builder.endpoint.port == 465:
            mode = "implicit"
    ca_file = connection.ca_file or common.profile().get("ca_file")
    report = probe(builder, mode, ca_file)
    if common.json:
        emit_json(report.to_json())
    else:
        _show(report)
    return ExitCode.PERMANENT if report.verified is False else ExitCode.OK
