"""The configuration file: its location, its parsing and type checks, one profile's settings.

Layer: L6b (profiles, private). Reads the TOML file; never the network, never a secret (the
secrets are read by ``_secrets`` when a builder is made).
"""

from __future__ import annotations

import os
import pathlib
import tomllib
import typing

import attrs

from mailsdk.errors import ConfigurationError

__all__ = [
    "ConfigFile",
    "ENV_KEYS",
    "ENV_PREFIX",
    "OAUTH_KEYS",
    "OAUTH_PROVIDERS",
    "PROFILE_KEYS",
    "Profile",
    "default_config_path",
    "load_config",
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
    "access_token_env": str,
    "access_token_file": str,
}

OAUTH_PROVIDERS: typing.Final = (
    "msal-app-only",
    "msal-device-code",
    "google-service-account",
    "google-user",
    "static",
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
