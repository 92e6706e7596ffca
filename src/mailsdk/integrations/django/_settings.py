"""Build a mailsdk client from Django's ``EMAIL_*`` settings plus mailsdk's ``MAILSDK_*``.

Layer: L7 (integrations.django, private). Imports ``mailsdk.builder``, ``transport`` and L0;
``django.conf.settings`` is passed in, never imported here.

Django's names keep their meaning (``EMAIL_HOST``, ``EMAIL_PORT``, ``EMAIL_HOST_USER``,
``EMAIL_HOST_PASSWORD``, ``EMAIL_USE_TLS`` = STARTTLS, ``EMAIL_USE_SSL`` = implicit TLS,
``EMAIL_TIMEOUT``, ``EMAIL_SSL_CERTFILE``/``EMAIL_SSL_KEYFILE`` = client certificate); mailsdk
adds:

* ``MAILSDK_TLS_MODE``: ``"implicit"``, ``"starttls"``, ``"opportunistic"`` or ``"none"``
  (overrides the two booleans).
* ``MAILSDK_CA_FILE``: a CA bundle to verify the server with.
* ``MAILSDK_TOKEN_PROVIDER``: ``"module:callable"`` returning a ``TokenProvider`` (OAuth, e.g.
  Office365 or Gmail); the user is ``EMAIL_HOST_USER``.
* ``MAILSDK_CLIENT``: ``"module:callable"`` returning a ``Client`` or ``ClientBuilder``: full
  control, and every other connection setting is ignored.
* ``MAILSDK_PROFILE``: a profile of the mailsdk configuration file (the one the ``mailsdk``
  command reads: ``MAILSDK_CONFIG_FILE``, else ``$MAILSDK_CONFIG``, else the XDG location);
  it replaces the ``EMAIL_*`` connection settings.
* ``MAILSDK_POOL_SIZE``: the connections of the backend's pool (default 1): one
  ``send_messages`` call spreads its messages over up to this many connections.
* ``MAILSDK_CELERY_TASKS``: ``"module:attribute"`` of the ``MailTasks`` that
  :func:`mailsdk.integrations.celery.install` returned: messages are handed to the workers.
"""

from __future__ import annotations

import importlib
import math
import typing

import attrs

from mailsdk.builder import ClientBuilder
from mailsdk.client import Client
from mailsdk.errors import ConfigurationError
from mailsdk.transport import TlsSettings
from mailsdk.transport.tls import ClientCertificate

__all__ = ["BackendOptions", "build_client", "load_object"]


def load_object(path: str, setting: str) -> object:
    """Import ``"module:attribute"`` (dots allowed after the colon).

    Raises:
        ConfigurationError: the path is malformed or does not resolve (names the setting).
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"{setting} must look like 'module:attribute', not {path!r}")
    try:
        target: object = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot import {setting} {path!r}: {exc}") from None
    return target


@attrs.frozen
class BackendOptions:
    """The connection settings of one backend instance (Django's constructor arguments win)."""

    host: str
    port: int | None
    username: str | None
    password: str | None = attrs.field(repr=False)
    use_tls: bool
    use_ssl: bool
    timeout: float | None
    ssl_certfile: str | None
    ssl_keyfile: str | None
    tls_mode: str | None
    ca_file: str | None
    token_provider: str | None
    client: str | None
    pool_size: int
    profile: str | None = None
    config_file: str | None = None


def build_client(options: BackendOptions) -> Client:
    """The :class:`Client` the options describe.

    Raises:
        ConfigurationError: contradictory or invalid settings (the password is never named).
    """
    if options.client:
        factory = load_object(options.client, "MAILSDK_CLIENT")
        if not callable(factory):
            raise ConfigurationError("MAILSDK_CLIENT must name a callable")
        made = factory()
        if isinstance(made, ClientBuilder):
            made = made.build()
        if not isinstance(made, Client):
            raise ConfigurationError("MAILSDK_CLIENT must return a Client or a ClientBuilder")
        return made
    if options.profile:
        from mailsdk.profiles import builder_for_profile, load_config

        config = load_config(options.config_file)
        return builder_for_profile(config.profile(options.profile)).build()
    if options.use_tls and options.use_ssl:
        raise ConfigurationError("EMAIL_USE_TLS and EMAIL_USE_SSL are mutually exclusive")
    mode = options.tls_mode
    if mode is None:
        mode = "implicit" if options.use_ssl else "starttls" if options.use_tls else "none"
    builder = ClientBuilder.smtp(options.host, options.port)
    cert = None
    if options.ssl_certfile:
        cert = ClientCertificate(certfile=options.ssl_certfile, keyfile=options.ssl_keyfile)
    if options.ca_file or cert is not None:
        builder = builder.with_tls(
            mode, settings=TlsSettings(ca_file=options.ca_file, client_cert=cert)
        )
    else:
        builder = builder.with_tls(mode)
    timeout: object = options.timeout  # straight from the settings: maybe a str
    if timeout is not None:
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)  # pyright: ignore[reportUnnecessaryIsInstance]
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ConfigurationError("EMAIL_TIMEOUT must be a positive number of seconds")
        builder = builder.with_timeouts(float(timeout))
    if options.token_provider:
        if not options.username:
            raise ConfigurationError("MAILSDK_TOKEN_PROVIDER needs EMAIL_HOST_USER")
        factory = load_object(options.token_provider, "MAILSDK_TOKEN_PROVIDER")
        provider = factory() if callable(factory) and not hasattr(factory, "token") else factory
        builder = builder.with_token_provider(options.username, typing.cast(typing.Any, provider))
    elif options.username and options.password:
        builder = builder.with_credentials(options.username, options.password)
    return builder.build()
