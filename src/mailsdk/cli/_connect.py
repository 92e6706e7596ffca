"""From command-line options and a profile to a :class:`~mailsdk.ClientBuilder`.

Layer: L8 command line (private). The one place that decides where a setting comes from
(option, ``MAILSDK_*`` variable, profile) and where secrets come from (environment, a 0600 file,
a prompt; never the command line).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import sys
import typing
import urllib.parse

import attrs
import click

from mailsdk._secret import Secret
from mailsdk.auth.tokens import TokenProvider
from mailsdk.builder import ClientBuilder
from mailsdk.cli._terminal import safe
from mailsdk.errors import ConfigurationError
from mailsdk.profiles import ENV_PREFIX, Profile, secret_from
from mailsdk.transport import TlsSettings

__all__ = ["ConnectionOptions", "builder_for", "token_provider_for"]

PASSWORD_ENV: typing.Final = ENV_PREFIX + "PASSWORD"
_URL_SCHEME: typing.Final = re.compile(r"(?:smtps?|lmtp)(?:\+unix)?:", re.IGNORECASE)


@attrs.frozen(kw_only=True)
class ConnectionOptions:
    """The shared connection options of ``send``, ``batch`` and ``probe`` (``None``: unset)."""

    server: str | None = None
    tls: str | None = None
    user: str | None = None
    auth: tuple[str, ...] = ()
    password_env: str | None = None
    ca_file: str | None = None
    timeout: float | None = None
    local_hostname: str | None = None
    lmtp: bool = False


def _without_user(parts: urllib.parse.SplitResult) -> str:
    """The URL without its ``user@`` part (a probe never authenticates)."""
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


def _base(
    server: str,
    tls: str | None,
    password_for: typing.Callable[[str], Secret] | None,
) -> ClientBuilder:
    if "://" in server or _URL_SCHEME.match(server):  # "smtp:user:pw@host" is a URL too
        try:
            parts = urllib.parse.urlsplit(server)
            user, has_password = parts.username, parts.password is not None
        except ValueError:
            raise ConfigurationError("the server URL is malformed") from None
        if has_password:
            # anyone on the machine can read a command line (ps): never take a secret there
            raise ConfigurationError(
                "the server URL contains a password; remove it and set "
                f"{PASSWORD_ENV} (or a profile's password_env/password_file)"
            )
        from_url = getattr(ClientBuilder, "from_url", None)
        if from_url is None:
            raise ConfigurationError(
                "server URLs need ClientBuilder.from_url (not in this mailsdk); use host[:port]"
            )
        if password_for is None:
            # no authentication (probe): the user is irrelevant, so never ask for a password
            return typing.cast("ClientBuilder", from_url(_without_user(parts)))
        password = password_for(urllib.parse.unquote(user)) if user else None
        return typing.cast("ClientBuilder", from_url(server, password=password))
    if "@" in server:
        # "user:pw@host" without a scheme: the builder's error would quote it, password and all
        raise ConfigurationError(
            "--server is HOST[:PORT] or a URL; credentials never go there (use --user and "
            f"{PASSWORD_ENV})"
        )
    builder = ClientBuilder.smtp(server)
    if tls is None and builder.endpoint.port == 465:
        return builder.with_tls("implicit")
    return builder


def _password(opts: ConnectionOptions, profile: Profile, user: str, prompt: bool) -> Secret:
    if opts.password_env:
        # only the variable asked for: falling back to MAILSDK_PASSWORD would send another
        # account's password to this server
        value = os.environ.get(opts.password_env)
        if not value:
            raise ConfigurationError(f"environment variable {opts.password_env} is not set")
        return Secret(value)
    if os.environ.get(PASSWORD_ENV):
        return Secret(os.environ[PASSWORD_ENV])
    secret = secret_from(profile.get("password_env"), profile.get("password_file"), "password")
    if secret is not None:
        return secret
    if prompt and sys.stdin.isatty():
        value = click.prompt(f"password for {safe(user)}", hide_input=True, err=True)
        return Secret(str(value))
    raise ConfigurationError(
        f"no password for {user!r}: set {PASSWORD_ENV} (or --password-env NAME, or a profile's "
        "password_env/password_file); passwords are never taken on the command line"
    )


def _http_session(ca_file: str | None) -> typing.Any:
    import requests

    session = requests.Session()
    if ca_file:
        session.verify = os.path.expanduser(ca_file)
    return session


def _device_prompt(prompt: typing.Any) -> None:
    click.echo(safe(prompt.message), err=True)


def token_provider_for(profile: Profile, user: str | None) -> tuple[TokenProvider, list[str]]:
    """The OAuth provider a profile's ``[oauth]`` table describes, and its scopes.

    Raises:
        ConfigurationError: missing keys or secrets.
    """
    oauth = profile.oauth
    if oauth is None:
        raise ConfigurationError(f"profile {profile.name!r} has no [oauth] table")
    kind = oauth["provider"]
    session = _http_session(oauth.get("ca_file"))
    scopes = [str(s) for s in oauth.get("scopes", [])]
    if kind.startswith("msal-"):
        from mailsdk.auth import msal as m

        client_id = oauth.get("client_id")
        if not client_id:
            raise ConfigurationError(f"profile {profile.name!r} oauth: client_id is required")
        common: dict[str, typing.Any] = {
            "authority": oauth.get("authority"),
            "http_client": session,
            "cache": os.path.expanduser(oauth["cache_file"]) if oauth.get("cache_file") else None,
        }
        if "instance_discovery" in oauth:
            common["instance_discovery"] = oauth["instance_discovery"]
        if kind == "msal-app-only":
            scopes = scopes or [m.APP_ONLY_SCOPE]
            credential: typing.Any
            if oauth.get("certificate_file"):
                credential = m.CertificateCredential.load(
                    os.path.expanduser(oauth["certificate_file"])
                )
            else:
                credential = secret_from(
                    oauth.get("client_secret_env"), oauth.get("client_secret_file"), "client secret"
                )
                if credential is None:
                    raise ConfigurationError(
                        f"profile {profile.name!r} oauth: give client_secret_env, "
                        "client_secret_file or certificate_file"
                    )
            app = m.MsalAppOnlyProvider(
                oauth.get("tenant"), client_id, credential, username=user, scopes=scopes, **common
            )
            return app, scopes
        scopes = scopes or [m.DELEGATED_SCOPE]
        delegated = m.MsalDeviceCodeProvider(
            oauth.get("tenant") or "organizations",
            client_id,
            prompt=_device_prompt,
            username=user,
            scopes=scopes,
            **common,
        )
        return delegated, scopes
    from mailsdk.auth import google as g

    scopes = scopes or [g.GMAIL_SCOPE]
    if kind == "google-service-account":
        path = oauth.get("service_account_file")
        subject = oauth.get("subject") or user
        if not path or not subject:
            raise ConfigurationError(
                f"profile {profile.name!r} oauth: service_account_file and subject (or user) "
                "are required"
            )
        provider = g.GoogleTokenProvider.from_service_account_file(
            os.path.expanduser(path), subject=subject, scopes=tuple(scopes), session=session
        )
        return provider, scopes
    path = oauth.get("authorized_user_file")
    if not path:
        raise ConfigurationError(
            f"profile {profile.name!r} oauth: authorized_user_file is required"
        )
    try:
        info = json.loads(pathlib.Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {path} ({type(exc).__name__})") from None
    provider = g.GoogleTokenProvider.from_authorized_user_info(
        info, username=user, scopes=tuple(scopes), token_uri=oauth.get("token_uri"), session=session
    )
    return provider, scopes


def builder_for(
    opts: ConnectionOptions, profile: Profile, *, authenticate: bool = True, prompt: bool = True
) -> ClientBuilder:
    """The builder for these options and this profile.

    Raises:
        ConfigurationError: no server, a bad TLS mode, a missing secret...
    """
    server = opts.server or profile.get("server")
    if not server:
        raise ConfigurationError(
            f"no server: give --server HOST[:PORT], set {ENV_PREFIX}SERVER, or use a profile"
        )
    tls = opts.tls or profile.get("tls")

    def ask_password(user: str) -> Secret:
        return _password(opts, profile, user, prompt)

    password_for = ask_password if authenticate else None
    builder = _base(str(server), tls, password_for)
    if opts.lmtp or profile.get("lmtp"):
        builder = builder.with_lmtp()
    ca_file = opts.ca_file or profile.get("ca_file")
    if tls is not None:
        builder = builder.with_tls(tls)
    if ca_file:
        builder = builder.with_tls_settings(TlsSettings(ca_file=os.path.expanduser(ca_file)))
    timeout = opts.timeout if opts.timeout is not None else profile.get("timeout")
    if timeout is not None:
        builder = builder.with_timeouts(float(timeout))
    local = opts.local_hostname or profile.get("local_hostname")
    if local:
        builder = builder.with_local_hostname(str(local))
    if not authenticate:
        return builder
    user = opts.user or profile.get("user")
    raw_auth = opts.auth or profile.get("auth") or ()
    mechanisms = [raw_auth] if isinstance(raw_auth, str) else list(raw_auth)
    mechanisms = [m.strip().upper() for part in mechanisms for m in part.split(",") if m.strip()]
    if profile.oauth is not None and not opts.user and not opts.password_env:
        provider, _ = token_provider_for(profile, user)
        name = user or getattr(provider, "username", None)
        if not name:
            raise ConfigurationError(f"profile {profile.name!r}: OAuth needs user = the mailbox")
        return builder.with_token_provider(name, provider, **_mechs(mechanisms))
    if user:
        return builder.with_credentials(
            user, _password(opts, profile, user, prompt), mechanisms=mechanisms or None
        )
    if mechanisms:
        raise ConfigurationError("--auth needs --user (or a profile's user)")
    return builder


def _mechs(mechanisms: list[str]) -> dict[str, typing.Any]:
    return {"mechanisms": tuple(mechanisms)} if mechanisms else {}
