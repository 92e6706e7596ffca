"""Profiles: a TOML file of named connection settings, ``MAILSDK_*`` variables, secrets.

Layer: L6b (profiles), above the builder and below the command line and the integrations, so
``mailsdk`` commands, Celery workers (``mailsdk_profile``) and Django (``MAILSDK_PROFILE``) read
the same file. Imports ``mailsdk.builder``, ``transport`` and L0; reads files, never the network.

The file (``--config PATH``, else ``$MAILSDK_CONFIG``, else ``$XDG_CONFIG_HOME/mailsdk/config.toml``
or ``~/.config/mailsdk/config.toml``)::

    default_profile = "work"

    [profiles.work]
    server = "smtp.example.com:587"      # host[:port] or a URL
    tls = "starttls"                     # implicit | starttls | opportunistic | none
    user = "me@example.com"
    password_env = "WORK_SMTP_PASSWORD"  # or password_file = "~/.config/mailsdk/work.secret"
    from = "me@example.com"

    [profiles.o365]
    server = "smtp.office365.com:587"
    user = "sender@contoso.com"
    [profiles.o365.oauth]
    provider = "msal-app-only"           # msal-device-code | google-service-account | google-user
    tenant = "contoso.onmicrosoft.com"
    client_id = "00000000-0000-0000-0000-000000000000"
    client_secret_env = "O365_CLIENT_SECRET"

Secrets never live in the file itself: a ``*_env`` key names an environment variable, a
``*_file`` key a file that must not be readable by group or others (``chmod 600``).
Precedence: command-line option, then ``MAILSDK_*`` variable, then the profile.
"""

from __future__ import annotations

import os
import pathlib
import stat
import tomllib
import typing
import urllib.parse

import attrs

from mailsdk._secret import Secret
from mailsdk.builder import ClientBuilder
from mailsdk.errors import ConfigurationError
from mailsdk.transport import TlsSettings

__all__ = [
    "ConfigFile",
    "ENV_PREFIX",
    "Profile",
    "builder_for_profile",
    "default_config_path",
    "load_config",
    "read_secret_file",
    "secret_from",
]

ENV_PREFIX: typing.Final = "MAILSDK_"

#: Profile keys and their TOML types.
PROFILE_KEYS: typing.Final[dict[str, type | tuple[type, ...]]] = {
    "server": str,
    "tls": str,
    "user": str,
    "password_env": str,
    "password_file": str,
    "auth": (str, list),
    "from": str,
    "ca_file": str,
    "timeout": (int, float),
    "local_hostname": str,
    "lmtp": bool,
    "oauth": dict,
}

#: The ``[profiles.NAME.oauth]`` keys.
OAUTH_KEYS: typing.Final[dict[str, type | tuple[type, ...]]] = {
    "provider": str,
    "tenant": str,
    "client_id": str,
    "client_secret_env": str,
    "client_secret_file": str,
    "certificate_file": str,
    "authority": str,
    "instance_discovery": bool,
    "scopes": list,
    "cache_file": str,
    "ca_file": str,
    "service_account_file": str,
    "subject": str,
    "authorized_user_file": str,
    "token_uri": str,
}

OAUTH_PROVIDERS: typing.Final = (
    "msal-app-only",
    "msal-device-code",
    "google-service-account",
    "google-user",
)

#: Settings that may come from ``MAILSDK_<NAME>`` (upper case) variables.
ENV_KEYS: typing.Final = ("server", "tls", "user", "from", "ca_file", "timeout", "local_hostname")


@attrs.frozen
class Profile:
    """One named set of settings (already type-checked)."""

    name: str | None
    values: dict[str, typing.Any] = attrs.field(factory=dict[str, typing.Any])

    def get(self, key: str) -> typing.Any:
        """A setting: the ``MAILSDK_<KEY>`` variable wins over the profile's value."""
        if key in ENV_KEYS:
            env = os.environ.get(ENV_PREFIX + key.upper())
            if env and key == "timeout":
                try:
                    return float(env)
                except ValueError:
                    raise ConfigurationError(
                        f"{ENV_PREFIX}TIMEOUT must be a number of seconds, not {env!r}"
                    ) from None
            if env:
                return env
        return self.values.get(key)

    @property
    def oauth(self) -> dict[str, typing.Any] | None:
        """The ``oauth`` table, or ``None``."""
        value = self.values.get("oauth")
        return typing.cast("dict[str, typing.Any] | None", value)


@attrs.frozen
class ConfigFile:
    """The parsed configuration file (empty when there is none)."""

    path: pathlib.Path
    exists: bool
    default_profile: str | None
    profiles: dict[str, Profile]

    def profile(self, name: str | None) -> Profile:
        """The profile ``name`` (``None``: ``$MAILSDK_PROFILE``, then ``default_profile``).

        Raises:
            ConfigurationError: a named profile that is not in the file.
        """
        chosen = name or os.environ.get(ENV_PREFIX + "PROFILE") or self.default_profile
        if chosen is None:
            return Profile(None)
        if chosen not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none"
            where = str(self.path) if self.exists else f"{self.path} (missing)"
            raise ConfigurationError(f"no profile {chosen!r} in {where}; known: {known}")
        return self.profiles[chosen]


def default_config_path() -> pathlib.Path:
    """``$MAILSDK_CONFIG``, else the XDG config location of ``mailsdk/config.toml``."""
    explicit = os.environ.get(ENV_PREFIX + "CONFIG")
    if explicit:
        return pathlib.Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return pathlib.Path(base) / "mailsdk" / "config.toml"


def _check_table(
    where: str, table: dict[str, typing.Any], keys: dict[str, type | tuple[type, ...]]
) -> None:
    for key, value in table.items():
        if key not in keys:
            raise ConfigurationError(f"{where}: unknown key {key!r}")
        expected = keys[key]
        # bool is an int in Python: a timeout of `true` is still a mistake
        if isinstance(value, bool) and expected is not bool:
            raise ConfigurationError(f"{where}: {key} must not be a boolean")
        if not isinstance(value, expected):
            raise ConfigurationError(f"{where}: {key} has the wrong type ({type(value).__name__})")


def _profile(name: str, table: object) -> Profile:
    where = f"profile {name!r}"
    if not isinstance(table, dict):
        raise ConfigurationError(f"{where} must be a table")
    table = typing.cast("dict[str, typing.Any]", table)  # a TOML table: str keys
    _check_table(where, table, PROFILE_KEYS)
    oauth = typing.cast("dict[str, typing.Any] | None", table.get("oauth"))
    if oauth is not None:
        _check_table(f"{where} oauth", oauth, OAUTH_KEYS)
        provider = oauth.get("provider")
        if provider not in OAUTH_PROVIDERS:
            choices = ", ".join(OAUTH_PROVIDERS)
            raise ConfigurationError(f"{where} oauth: provider must be one of {choices}")
        if "password_env" in table or "password_file" in table:
            raise ConfigurationError(f"{where}: give a password or oauth, not both")
    return Profile(name, dict(table))


def load_config(path: str | os.PathLike[str] | None = None) -> ConfigFile:
    """Read and check the configuration file.

    Args:
        path: an explicit file (must exist); ``None`` uses :func:`default_config_path`, which
            may be absent (no profiles).

    Raises:
        ConfigurationError: unreadable or malformed file, unknown keys, wrong types.
    """
    explicit = path is not None or bool(os.environ.get(ENV_PREFIX + "CONFIG"))
    target = pathlib.Path(path).expanduser() if path is not None else default_config_path()
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigurationError(f"configuration file {target} does not exist") from None
        return ConfigFile(target, False, None, {})
    except OSError as exc:
        raise ConfigurationError(f"cannot read {target}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{target} is not valid TOML: {exc}") from None
    unknown = set(data) - {"default_profile", "profiles"}
    if unknown:
        raise ConfigurationError(f"{target}: unknown top-level keys {sorted(unknown)}")
    default = data.get("default_profile")
    if default is not None and not isinstance(default, str):
        raise ConfigurationError(f"{target}: default_profile must be a string")
    tables = data.get("profiles", {})
    if not isinstance(tables, dict):
        raise ConfigurationError(f"{target}: [profiles] must be a table")
    entries = typing.cast("dict[str, object]", tables)  # a TOML table: str keys
    profiles = {name: _profile(name, table) for name, table in entries.items()}
    if default is not None and default not in profiles:
        raise ConfigurationError(f"{target}: default_profile {default!r} is not defined")
    return ConfigFile(target, True, default, profiles)


def read_secret_file(path: str) -> Secret:
    """Read a secret from a file that only its owner (this user) can read.

    The file is opened without following a symbolic link and checked through the open
    descriptor, so the file checked is the file read (a symlink swapped in between cannot
    point the read elsewhere).

    Raises:
        ConfigurationError: missing file, a symbolic link, not a regular file, owned by another
            user, or readable/writable by group or others.
    """
    target = pathlib.Path(path).expanduser()
    try:
        fd = os.open(
            target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOCTTY", 0)
        )
    except FileNotFoundError:
        raise ConfigurationError(f"secret file {target} does not exist") from None
    except OSError as exc:
        if target.is_symlink():
            raise ConfigurationError(
                f"secret file {target} is a symbolic link; point the profile at the file itself"
            ) from None
        raise ConfigurationError(f"cannot open secret file {target}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigurationError(f"secret file {target} is not a regular file")
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise ConfigurationError(f"secret file {target} belongs to another user")
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigurationError(
                f"secret file {target} is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):03o}); run: chmod 600 {target}"
            )
        try:
            text = handle.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"cannot read secret file {target} ({type(exc).__name__})"
            ) from None
    value = text.rstrip("\r\n")
    if not value:
        raise ConfigurationError(f"secret file {target} is empty")
    return Secret(value)


def secret_from(env_name: str | None, file_name: str | None, what: str) -> Secret | None:
    """A secret from the variable ``env_name`` or the file ``file_name`` (variable first).

    Raises:
        ConfigurationError: the variable is named but not set, or the file is unsafe.
    """
    if env_name:
        value = os.environ.get(env_name)
        if value:
            return Secret(value)
        if not file_name:
            raise ConfigurationError(f"{what}: environment variable {env_name} is not set")
    if file_name:
        return read_secret_file(file_name)
    return None


def _profile_password(profile: Profile) -> Secret | None:
    if os.environ.get(ENV_PREFIX + "PASSWORD"):
        return Secret(os.environ[ENV_PREFIX + "PASSWORD"])
    return secret_from(profile.get("password_env"), profile.get("password_file"), "password")


def _url_builder(profile: Profile, server: str) -> ClientBuilder:
    try:
        parts = urllib.parse.urlsplit(server)
        url_user, has_password = parts.username, parts.password is not None
    except ValueError:
        raise ConfigurationError(f"profile {profile.name!r}: the server URL is malformed") from None
    if has_password:
        raise ConfigurationError(
            f"profile {profile.name!r}: the server URL contains a password; use password_env "
            "or password_file"
        )
    password = _profile_password(profile) if url_user else None
    return ClientBuilder.from_url(server, password=password)


def builder_for_profile(profile: Profile) -> ClientBuilder:
    """The :class:`~mailsdk.ClientBuilder` a profile describes, without any prompt: for
    programs (Celery workers, Django) rather than people.

    ``server`` (``host[:port]`` or a URL), ``tls``, ``ca_file``, ``timeout``,
    ``local_hostname``, ``lmtp``, ``user`` with ``password_env``/``password_file`` (or
    ``MAILSDK_PASSWORD``) and ``auth`` are honoured, the ``MAILSDK_<KEY>`` variables winning as
    everywhere. OAuth profiles need a token provider built in code: give the integration a
    client factory instead.

    Raises:
        ConfigurationError: no server, an OAuth profile, a user without a password, a password
            in the server URL.
    """
    server = profile.get("server")
    if not server:
        raise ConfigurationError(f"profile {profile.name!r} has no server")
    server = str(server)
    if profile.oauth is not None:
        raise ConfigurationError(
            f"profile {profile.name!r} uses OAuth: build its token provider in a client factory"
        )
    tls = profile.get("tls")
    if "://" in server:
        builder = _url_builder(profile, server)
    else:
        builder = ClientBuilder.smtp(server)
        if tls is None and builder.endpoint.port == 465:
            builder = builder.with_tls("implicit")
    if tls is not None:
        builder = builder.with_tls(str(tls))
    if profile.get("lmtp"):
        builder = builder.with_lmtp()
    ca_file = profile.get("ca_file")
    if ca_file:
        builder = builder.with_tls_settings(TlsSettings(ca_file=os.path.expanduser(str(ca_file))))
    timeout = profile.get("timeout")
    if timeout is not None:
        builder = builder.with_timeouts(float(timeout))
    local = profile.get("local_hostname")
    if local:
        builder = builder.with_local_hostname(str(local))
    user = profile.get("user")
    raw = profile.get("auth") or ()
    mechanisms = [raw] if isinstance(raw, str) else list(raw)
    mechanisms = [m.strip().upper() for part in mechanisms for m in part.split(",") if m.strip()]
    if not user or ("://" in server and urllib.parse.urlsplit(server).username):
        if mechanisms and not user:
            raise ConfigurationError(f"profile {profile.name!r}: auth needs a user")
        return builder
    password = _profile_password(profile)
    if password is None:
        raise ConfigurationError(
            f"profile {profile.name!r}: user {user!r} needs password_env or password_file"
        )
    return builder.with_credentials(str(user), password, mechanisms=mechanisms or None)
