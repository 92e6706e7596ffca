"""From command-line options and a profile to a :class:`~mailsdk.ClientBuilder`.

Layer: L8 command line (private). The options are passed to
:func:`mailsdk.profiles.builder_for_profile` as overrides: the profiles layer decides where
each setting and secret comes from, for the command line and the integrations alike. What is
the command line's own: the wording that names its options, and the two things only a person
at a terminal can do (type a password at a hidden prompt, follow a device-code sign-in).
"""

from __future__ import annotations

import sys
import typing

import click

from mailsdk._secret import Secret
from mailsdk.auth.tokens import TokenProvider
from mailsdk.builder import ClientBuilder
from mailsdk.cli._terminal import safe
from mailsdk.errors import ConfigurationError
from mailsdk.profiles import (
    ENV_PREFIX,
    Overrides,
    Profile,
    builder_for_profile,
    token_provider_for_profile,
)

__all__ = ["ConnectionOptions", "builder_for", "token_provider_for"]

PASSWORD_ENV: typing.Final = ENV_PREFIX + "PASSWORD"

#: The shared connection options of ``send``, ``batch`` and ``probe`` (``None``: unset).
ConnectionOptions = Overrides


def _device_prompt(prompt: typing.Any) -> None:
    click.echo(safe(prompt.message), err=True)


def _prompt_password(user: str) -> Secret:
    if sys.stdin.isatty():
        value = click.prompt(f"password for {safe(user)}", hide_input=True, err=True)
        return Secret(str(value))
    raise ConfigurationError(
        f"no password for {user!r}: set {PASSWORD_ENV} (or --password-env NAME, or a profile's "
        "password_env/password_file); passwords are never taken on the command line"
    )


def token_provider_for(profile: Profile, user: str | None) -> tuple[TokenProvider, list[str]]:
    """The OAuth provider of a profile, able to show a device-code sign-in on stderr.

    Raises:
        ConfigurationError: no ``[oauth]`` table, missing keys or secrets.
    """
    return token_provider_for_profile(profile, user, device_prompt=_device_prompt)


def builder_for(
    opts: Overrides, profile: Profile, *, authenticate: bool = True, prompt: bool = True
) -> ClientBuilder:
    """The builder for these options and this profile (``prompt``: may ask at a terminal).

    Raises:
        ConfigurationError: no server, a bad TLS mode, a missing secret...
    """
    if not (opts.server or profile.get("server")):
        raise ConfigurationError(
            f"no server: give --server HOST[:PORT], set {ENV_PREFIX}SERVER, or use a profile"
        )
    return builder_for_profile(
        profile,
        opts,
        authenticate=authenticate,
        ask_password=_prompt_password if prompt else None,
        device_prompt=_device_prompt if prompt else None,
    )
