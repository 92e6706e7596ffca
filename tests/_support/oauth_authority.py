"""A local HTTPS OAuth authority on 127.0.0.1 so real msal and google-auth run against loopback.

Test helper (not collected). It implements just what msal needs with ``instance_discovery=False``
(OIDC discovery, the v2.0 token endpoint for client credentials, the device-code endpoint and its
polling grant, the refresh-token grant) and Google's ``/token`` endpoint (JWT-bearer and refresh
grants). Every request is recorded for assertions. TLS comes from a trustme CA; clients must trust
``ca_path`` through their own ``requests.Session`` (``trust_env=False`` so REQUESTS_CA_BUNDLE in the
environment cannot override ``verify``).
"""

from __future__ import annotations

import base64
import itertools
import json
import ssl
import threading
import time
import typing
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import attrs
import requests
import trustme

__all__ = [
    "DEVICE_CODE_GRANT",
    "FakeClock",
    "JWT_BEARER_GRANT",
    "OAuthAuthority",
    "RecordedRequest",
    "decode_jwt",
]

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_RESERVED_SCOPES = {"openid", "profile", "offline_access"}


def _b64url(data: dict[str, object]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64url_decode(part: str) -> dict[str, typing.Any]:
    padded = part + "=" * (-len(part) % 4)
    return typing.cast("dict[str, typing.Any]", json.loads(base64.urlsafe_b64decode(padded)))


def decode_jwt(token: str) -> tuple[dict[str, typing.Any], dict[str, typing.Any]]:
    """Return the (header, claims) of a JWT without verifying it."""
    header, claims, _sig = token.split(".")
    return _b64url_decode(header), _b64url_decode(claims)


class FakeClock:
    """A settable clock for the providers (no sleeps in tests)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@attrs.frozen
class RecordedRequest:
    """One request the authority received."""

    method: str
    path: str
    form: dict[str, str]
    grant_type: str | None
    client_id: str | None
    scope: str | None
    has_client_assertion: bool
    assertion_header: dict[str, typing.Any] | None
    assertion_claims: dict[str, typing.Any] | None


class OAuthAuthority:
    """A threaded HTTPS authority; use as a context manager or call :meth:`close`.

    Attributes:
        tenant: the tenant path segment msal uses (``authority_url`` ends with it).
        expires_in: lifetime given to new access tokens.
        error: when set, token requests fail with this JSON body and ``error_status``.
        username / oid: the user put in id_tokens for delegated flows.
        requests: every request received, in order.
    """

    def __init__(
        self,
        ca: trustme.CA,
        directory: Path,
        *,
        tenant: str = "contoso.example",
        names: tuple[str, ...] = ("127.0.0.1", "localhost"),
    ) -> None:
        self.tenant = tenant
        self.expires_in = 3600
        #: the issued access tokens are PREFIX + a counter (a test may make it hostile)
        self.token_prefix = "at-"
        self.error: dict[str, str] | None = None
        self.error_status = 401
        self.username = "alice@contoso.example"
        self.oid = "00000000-0000-0000-0000-00000000a11c"
        self.tid = "11111111-2222-3333-4444-555555555555"
        self.user_code = "WDJB-MJHT"
        self.requests: list[RecordedRequest] = []
        #: answer msal's instance-metadata request (otherwise a 404, as a private authority does)
        self.instance_metadata = False
        self._device_scope = ""
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self.ca_path = directory / "oauth-authority-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*names).configure_cert(context)
        handler = type("_Handler", (_Handler,), {"authority": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        # Handshake lazily in the handler thread so a stalled client never blocks accept().
        self._server.socket = context.wrap_socket(
            self._server.socket, server_side=True, do_handshake_on_connect=False
        )
        self.port = self._server.server_address[1]
        self.base_url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    # -- client side helpers ----------------------------------------------------------------

    @property
    def authority_url(self) -> str:
        """The msal ``authority=`` value (``https://127.0.0.1:PORT/<tenant>``)."""
        return f"{self.base_url}/{self.tenant}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.authority_url}/oauth2/v2.0/token"

    @property
    def google_token_uri(self) -> str:
        return f"{self.base_url}/token"

    def session(self) -> requests.Session:
        """A requests session that trusts only this authority's CA and ignores the environment."""
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.ca_path)
        return session

    def token_requests(self, grant_type: str | None = None) -> list[RecordedRequest]:
        """The recorded POSTs to a token endpoint, optionally of one grant type."""
        with self._lock:
            found = [r for r in self.requests if r.grant_type is not None]
        return [r for r in found if grant_type is None or r.grant_type == grant_type]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> OAuthAuthority:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- server side -----------------------------------------------------------------------

    def _record(self, method: str, path: str, form: dict[str, str]) -> None:
        assertion = form.get("client_assertion") or form.get("assertion")
        header = claims = None
        if assertion:
            header, claims = decode_jwt(assertion)
        entry = RecordedRequest(
            method=method,
            path=path,
            form=form,
            grant_type=form.get("grant_type"),
            client_id=form.get("client_id"),
            scope=form.get("scope"),
            has_client_assertion="client_assertion" in form,
            assertion_header=header,
            assertion_claims=claims,
        )
        with self._lock:
            self.requests.append(entry)

    def _openid_configuration(self) -> dict[str, object]:
        base = self.authority_url
        return {
            "issuer": f"{self.base_url}/{self.tid}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": self.token_endpoint,
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "response_types_supported": ["code"],
        }

    def _id_token(self, client_id: str) -> str:
        now = int(time.time())
        claims = {
            "aud": client_id,
            "iss": f"{self.base_url}/{self.tid}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "oid": self.oid,
            "sub": self.oid,
            "tid": self.tid,
            "preferred_username": self.username,
            "name": "Alice",
        }
        return f"{_b64url({'alg': 'none', 'typ': 'JWT'})}.{_b64url(claims)}."

    def _tokens(self, form: dict[str, str], *, user: bool) -> dict[str, object]:
        n = next(self._counter)
        scopes = [s for s in form.get("scope", "").split() if s not in _RESERVED_SCOPES]
        body: dict[str, object] = {
            "token_type": "Bearer",
            "access_token": f"{self.token_prefix}{n}",
            "expires_in": self.expires_in,
            "ext_expires_in": self.expires_in,
            "scope": " ".join(scopes),
        }
        if user:
            body["refresh_token"] = f"rt-{n}"
            body["id_token"] = self._id_token(form.get("client_id", ""))
            body["client_info"] = _b64url({"uid": self.oid, "utid": self.tid})
        return body

    def handle(self, method: str, path: str, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        """Route one request; returns (status, JSON body)."""
        self._record(method, path, form)
        prefix = f"/{self.tenant}"
        if method == "GET" and path in (
            f"{prefix}/v2.0/.well-known/openid-configuration",
            f"{prefix}/.well-known/openid-configuration",
        ):
            return 200, self._openid_configuration()
        if self.instance_metadata and method == "GET" and path == "/common/discovery/instance":
            # msal's instance metadata (asked when it lists cached accounts): one cloud, no aliases
            return 200, {
                "tenant_discovery_endpoint": f"{self.authority_url}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [],
            }
        if method != "POST":
            return 404, {"error": "not_found"}
        if self.error is not None and path != f"{prefix}/oauth2/v2.0/devicecode":
            return self.error_status, dict(self.error)
        if path == f"{prefix}/oauth2/v2.0/devicecode":
            self._device_scope = form.get("scope", "")
            return 200, {
                "device_code": "device-code-1",
                "user_code": self.user_code,
                "verification_uri": "https://microsoft.com/devicelogin",
                "expires_in": 900,
                "interval": 5,
                "message": f"To sign in, open https://microsoft.com/devicelogin "
                f"and enter the code {self.user_code} to authenticate.",
            }
        grant = form.get("grant_type")
        if path == f"{prefix}/oauth2/v2.0/token":
            if grant == "client_credentials":
                return 200, self._tokens(form, user=False)
            if grant == DEVICE_CODE_GRANT:  # the poll carries no scope: echo the granted one
                return 200, self._tokens({**form, "scope": self._device_scope}, user=True)
            if grant == "refresh_token":
                return 200, self._tokens(form, user=True)
            return 400, {"error": "unsupported_grant_type"}
        if path == "/token":  # Google
            if grant in (JWT_BEARER_GRANT, "refresh_token"):
                body = self._tokens(form, user=False)
                body["access_token"] = f"ya29.{body['access_token']}"
                return 200, body
            return 400, {"error": "unsupported_grant_type"}
        return 404, {"error": "not_found"}


class _Handler(BaseHTTPRequestHandler):
    authority: typing.ClassVar[OAuthAuthority]
    timeout = 10

    def log_message(self, format: str, *args: object) -> None:
        pass

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        try:
            self.request.do_handshake()
        except (OSError, ssl.SSLError):
            self.close_connection = True
        super().setup()

    def _reply(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        self._reply(*self.authority.handle("GET", path, {}))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length).decode()
        form = dict(urllib.parse.parse_qsl(raw, keep_blank_values=True))
        path = urllib.parse.urlsplit(self.path).path
        self._reply(*self.authority.handle("POST", path, form))
