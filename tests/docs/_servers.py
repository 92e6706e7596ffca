"""The in-process servers the documentation examples run against (see ``_bootstrap.py``).

Not collected. One STARTTLS submission server (PLAIN/LOGIN for ``me@example.com``, XOAUTH2 for
tokens from the local authority, PIPELINING, one refused address) answers as
``mail.example.com:587``/``:25``, ``smtp.office365.com:587`` and ``smtp.gmail.com:587``; an
implicit-TLS server as ``mail.example.com:465``; an LMTP server as ``lmtp.example.com:24``; the
local OAuth authority as ``login.microsoftonline.com:443`` and ``oauth2.googleapis.com:443``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import pathlib
import ssl
import types
import typing
from collections.abc import Iterator

import attrs
import trustme
from aiosmtpd.smtp import AuthResult
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tests._support.oauth_authority import OAuthAuthority
from tests._support.smtpd import SmtpdServer, start_smtpd
from tests.docs._socks import SocksProxy

PASSWORD = "docs-example-password"
REFUSED = "nobody@example.net"
NAMES = (
    "mail.example.com",
    "smtp.example.com",
    "smtp.office365.com",
    "smtp.gmail.com",
    "lmtp.example.com",
)
IDP_NAMES = ("login.microsoftonline.com", "oauth2.googleapis.com", "127.0.0.1", "localhost")


async def _auth_xoauth2(self: object, server: typing.Any, args: list[str]) -> AuthResult:
    raw = args[1] if len(args) > 1 else ""
    if raw in ("", "="):
        raw = (await server.challenge_auth("", encode_to_b64=False)).decode()
    try:
        text = base64.b64decode(raw).decode()
    except ValueError:
        return AuthResult(success=False, handled=False)
    fields = dict(f.split("=", 1) for f in text.split("\x01") if "=" in f)
    token = fields.get("auth", "").removeprefix("Bearer ")
    ok = token.startswith(("at-", "ya29.")) and bool(fields.get("user"))
    return AuthResult(success=ok, handled=False)


async def _auth_login_utf8(self: object, server: typing.Any, args: list[str]) -> AuthResult:
    """The vendor mechanism of docs/extending.md: two prompts, user name then password."""
    user = await server.challenge_auth("Username:")
    secret = await server.challenge_auth("Password:")
    ok = user == b"me@example.com" and secret == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


@attrs.define
class DocsServers:
    """The running servers, the CA file and the host map for the bootstrap."""

    submission: SmtpdServer
    implicit: SmtpdServer
    lmtp: SmtpdServer
    authority: OAuthAuthority
    ca_file: pathlib.Path
    hosts: dict[str, int]


def _service_account(directory: pathlib.Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "docs",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "sender@docs.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    (directory / "service-account.json").write_text(json.dumps(info))


@contextlib.contextmanager
def docs_servers(ca: trustme.CA, directory: pathlib.Path) -> Iterator[DocsServers]:
    """Start everything; stop it all on exit. ``directory`` becomes the examples' cwd."""
    smtp_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*NAMES).configure_cert(smtp_ctx)
    users = {"me@example.com": PASSWORD, "sender@contoso.com": PASSWORD}
    submission = start_smtpd(starttls=smtp_ctx, users=users, refuse_rcpt=[REFUSED], pipelining=True)
    handler = submission.handler
    handler.auth_XOAUTH2 = types.MethodType(_auth_xoauth2, handler)  # type: ignore[attr-defined]
    # aiosmtpd names a mechanism after the method: "__" becomes "-"
    handler.auth_X__LOGIN__UTF8 = types.MethodType(_auth_login_utf8, handler)  # type: ignore[attr-defined]
    implicit = start_smtpd(implicit_tls=smtp_ctx, users=users, auth_require_tls=False)
    lmtp = start_smtpd(lmtp=True)
    authority = OAuthAuthority(ca, directory, tenant="contoso.onmicrosoft.com", names=IDP_NAMES)
    authority.instance_metadata = True  # msal asks for it when it lists cached accounts
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    _service_account(directory)
    hosts = {
        "mail.example.com:587": submission.port,
        "mail.example.com:25": submission.port,
        "smtp.example.com:587": submission.port,
        "mx.example:25": submission.port,
        "127.0.0.1:10587": submission.port,  # docs/connecting.md's bastion port forward
        "smtp.office365.com:587": submission.port,
        "smtp.gmail.com:587": submission.port,
        "mail.example.com:465": implicit.port,
        "lmtp.example.com:24": lmtp.port,
        "login.microsoftonline.com:443": authority.port,
        "oauth2.googleapis.com:443": authority.port,
    }
    proxy = SocksProxy(dict(hosts), {"proxyuser": "proxypass"})
    hosts["proxy.internal:1080"] = proxy.port
    try:
        yield DocsServers(submission, implicit, lmtp, authority, ca_file, hosts)
    finally:
        proxy.close()
        for server in (submission, implicit, lmtp):
            server.stop()
        authority.close()
