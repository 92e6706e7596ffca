"""Profiles: a TOML file of named connection settings, ``MAILSDK_*`` variables, secrets.

Layer: L6b (profiles), above the builder and below the command line and the integrations, so
``mailsdk`` commands, Celery workers (``mailsdk_profile``) and Django (``MAILSDK_PROFILE``) read
the same file and build the same client, OAuth included. Imports ``mailsdk.builder``,
``mailsdk.auth`` (token providers), ``transport`` and L0; reads files, never the network
itself (an OAuth provider asks its authority when the first token is needed).

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
    provider = "msal-app-only"    # msal-device-code | google-service-account | google-user | static
    tenant = "contoso.onmicrosoft.com"
    client_id = "00000000-0000-0000-0000-000000000000"
    client_secret_env = "O365_CLIENT_SECRET"

Secrets never live in the file itself: a ``*_env`` key names an environment variable, a
``*_file`` key a file that must not be readable by group or others (``chmod 600``).
Precedence: an override (a command-line option), then the ``MAILSDK_*`` variable, then the
profile.
"""

from __future__ import annotations

from mailsdk.profiles._build import Overrides, builder_for_profile
from mailsdk.profiles._file import ENV_PREFIX, ConfigFile, Profile, default_config_path, load_config
from mailsdk.profiles._oauth import token_provider_for_profile
from mailsdk.profiles._secrets import read_secret_file, secret_from

__all__ = [
    "ConfigFile",
    "ENV_PREFIX",
    "Overrides",
    "Profile",
    "builder_for_profile",
    "default_config_path",
    "load_config",
    "read_secret_file",
    "secret_from",
    "token_provider_for_profile",
]
