"""From a profile (and a caller's overrides) to a :class:`~mailsdk.ClientBuilder`.

Layer: L6b (profiles, private). The one place that decides where each connection setting
comes from: an override (the command line's options), else the ``MAILSDK_<KEY>`` variable,
else the profile; and where secrets come from: an override's variable, ``MAILSDK_PASSWORD``,
the profile's ``*_env``/``*_file`` keys, a caller's prompt (never a command line, never the
configuration file itself).
"""

from __future__ import annotations

import os
import re
import typing
import urllib.parse
from collections.abc import Callable, Sequence

import attrs

from mailsdk._secret import Secret
from mailsdk.builder import ClientBuilder
from mailsdk.errors import ConfigurationError
from mailsdk.profiles._file import ENV_PREFIX, Profile
from mailsdk.profiles._oauth import DevicePrompt, token_provider_for_profile
from mailsdk.profiles._secrets import secret_from
from mailsdk.transport import TlsSettings

__all__ = ["Overrides", "PasswordPrompt", "builder_for_profile"]

PASSWORD_ENV: typing.Final = ENV_PREFIX + "PASSWORD"
#: "smtp:user:pw@host" is a URL too (no "//"): it must never be read as host "smtp".
_URL_SCHEME: typing.Final = re.compile(r"(?:smtps?|lmtp)(?:\+unix)?:", re.IGNORECASE)

#: Asks a person for the password of a user (the command line's hidden prompt).
PasswordPrompt = Callable[[str], Secret]


@attrs.frozen(kw_only=True)
class Overrides:
    """Settings that win over the profile and the ``MAILSDK_*`` variables (``None``: unset).

    The command line passes its options here; a program may too.

    Attributes:
        server: ``host[:port]`` or a URL.
        tls: ``implicit``, ``starttls``, ``opportunistic`` or ``none``.
        user: authenticate as this user with a password (an OAuth profile then uses the
            password too).
        auth: SASL mechanisms, strongest first (each item may be comma-separated).
        password_env: the only variable the password is taken from (no fallback: another
            account's password must not reach this server).
        ca_file: trust the CAs in this PEM file.
        timeout: one deadline in seconds for every phase.
        local_hostname: the name sent in EHLO/LHLO.
        lmtp: speak LMTP (``False`` leaves the profile's choice).
    """

    server: str | None = None
    tls: str | None = None
    user: str | None = None
    auth: tuple[str, ...] = ()
    password_env: str | None = None
    ca_file: str | None = None
    timeout: float | None = None
    local_hostname: str | None = None
    lmtp: bool = False


def _who(profile: Profile) -> str:
    return f"profile {profile.name!r}" if profile.name else "the settings"


def _without_user(parts: urllib.parse.SplitResult) -> str:
    """The URL without its ``user@`` part (a builder that never authenticates)."""
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


def _base(
    server: str, tls: str | None, password_for: Callable[[str], Secret] | None
) -> tuple[ClientBuilder, bool]:
    """The builder for ``server`` and whether its URL named the user."""
    if "://" in server or _URL_SCHEME.match(server):
        try:
            parts = urllib.parse.urlsplit(server)
            user, has_password = parts.username, parts.password is not None
        except ValueError:
            raise ConfigurationError("the server URL is malformed") from None
        if has_password:
            # a command line is readable by anyone on the machine (ps), a config file is shared
            raise ConfigurationError(
                f"the server URL contains a password; remove it and set {PASSWORD_ENV} "
                "(or a profile's password_env/password_file)"
            )
        if password_for is None:
            # no authentication (probe): the user is irrelevant, so never ask for a password
            return ClientBuilder.from_url(_without_user(parts)), False
        password = password_for(urllib.parse.unquote(user)) if user else None
        return ClientBuilder.from_url(server, password=password), bool(user)
    if "@" in server:
        # "user:pw@host" without a scheme: the builder's error would quote it, password and all
        raise ConfigurationError(
            "the server is HOST[:PORT] or a URL; credentials never go there (give the user "
            f"separately and the password in {PASSWORD_ENV})"
        )
    builder = ClientBuilder.smtp(server)
    if tls is None and builder.endpoint.port == 465:
        builder = builder.with_tls("implicit")
    return builder, False


def _password(
    profile: Profile, overrides: Overrides, user: str, ask: PasswordPrompt | None
) -> Secret:
    if overrides.password_env:
        # only the variable asked for: falling back to MAILSDK_PASSWORD would send another
        # account's password to this server
        value = os.environ.get(overrides.password_env)
        if not value:
            raise ConfigurationError(f"environment variable {overrides.password_env} is not set")
        return Secret(value)
    if os.environ.get(PASSWORD_ENV):
        return Secret(os.environ[PASSWORD_ENV])
    secret = secret_from(profile.get("password_env"), profile.get("password_file"), "password")
    if secret is not None:
        return secret
    if ask is not None:
        return ask(user)
    raise ConfigurationError(
        f"{_who(profile)}: no password for user {user!r}: set {PASSWORD_ENV} or the profile's "
        "password_env or password_file (never the configuration file itself)"
    )


def _mechanisms(raw: str | Sequence[str]) -> list[str]:
    items = [raw] if isinstance(raw, str) else list(raw)
    return [m.strip().upper() for part in items for m in str(part).split(",") if m.strip()]


def builder_for_profile(
    profile: Profile,
    overrides: Overrides | None = None,
    *,
    authenticate: bool = True,
    ask_password: PasswordPrompt | None = None,
    device_prompt: DevicePrompt | None = None,
) -> ClientBuilder:
    """The :class:`~mailsdk.ClientBuilder` a profile describes.

    ``server`` (``host[:port]`` or a URL), ``tls``, ``ca_file``, ``timeout``,
    ``local_hostname``, ``lmtp``, ``user`` with ``password_env``/``password_file`` (or
    ``MAILSDK_PASSWORD``), ``auth`` and the ``[oauth]`` table (msal, Google or a static token:
    see :func:`token_provider_for_profile`) are honoured. Each setting comes from
    ``overrides``, else its ``MAILSDK_<KEY>`` variable, else the profile.

    Without ``ask_password`` and ``device_prompt`` nothing is ever asked of a person: right
    for programs (Celery workers, Django), which get a :class:`~mailsdk.errors.ConfigurationError`
    instead.

    Args:
        profile: the profile (``ConfigFile.profile(name)``; an empty one works with overrides).
        overrides: settings that win over the profile (the command line's options).
        authenticate: ``False`` builds a client that never authenticates (no secret is read).
        ask_password: called with the user when no password is found otherwise.
        device_prompt: shows an msal device-code sign-in (see
            :func:`token_provider_for_profile`).

    Raises:
        ConfigurationError: no server, a bad setting, a password in the server URL, a missing
            secret, OAuth without a mailbox, mechanisms without a user.
    """
    opts = overrides or Overrides()
    server = opts.server or profile.get("server")
    if not server:
        raise ConfigurationError(
            f"{_who(profile)} has no server: set its server or {ENV_PREFIX}SERVER"
        )
    tls = opts.tls or profile.get("tls")

    def password_for(user: str) -> Secret:
        return _password(profile, opts, user, ask_password)

    builder, url_user = _base(str(server), tls, password_for if authenticate else None)
    if tls is not None:
        builder = builder.with_tls(str(tls))
    if opts.lmtp or profile.get("lmtp"):
        builder = builder.with_lmtp()
    ca_file = opts.ca_file or profile.get("ca_file")
    if ca_file:
        builder = builder.with_tls_settings(TlsSettings(ca_file=os.path.expanduser(str(ca_file))))
    timeout = opts.timeout if opts.timeout is not None else profile.get("timeout")
    if timeout is not None:
        builder = builder.with_timeouts(timeout)
    local = opts.local_hostname or profile.get("local_hostname")
    if local:
        builder = builder.with_local_hostname(str(local))
    if not authenticate:
        return builder
    if url_user and not opts.user:
        if opts.auth:
            raise ConfigurationError(
                "the server URL names the user: give the mechanisms in it too (?auth=MECH)"
            )
        return builder  # a user in the server URL brings its own authentication
    user = opts.user or profile.get("user")
    mechanisms = _mechanisms(opts.auth or profile.get("auth") or ())
    if profile.oauth is not None and not opts.user and not opts.password_env:
        provider, _scopes = token_provider_for_profile(profile, user, device_prompt=device_prompt)
        mailbox = user or getattr(provider, "username", None)
        if not mailbox:
            raise ConfigurationError(f"{_who(profile)}: OAuth needs user = the mailbox")
        if mechanisms:
            return builder.with_token_provider(str(mailbox), provider, mechanisms=mechanisms)
        return builder.with_token_provider(str(mailbox), provider)
    if user:
        password = password_for(str(user))
        return builder.with_credentials(str(user), password, mechanisms=mechanisms or None)
    if mechanisms:
        raise ConfigurationError(f"{_who(profile)}: auth needs a user")
    return builder
