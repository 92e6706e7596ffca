"""``mailsdk token --profile NAME``: acquire (and cache) an OAuth token through a profile.

Layer: L8 command line. Uses the profile's ``[profiles.NAME.oauth]`` provider (msal app-only or
device code, Google service account or user) and prints who the token is for, the scopes asked
for and when it expires. The token itself is printed only with ``--show`` (for piping into
another tool); it never appears in errors, ``--json`` output without ``--show``, or logs.
"""

from __future__ import annotations

import datetime
import time
import typing

import click

from mailsdk.cli._connect import token_provider_for
from mailsdk.cli._exit import ExitCode
from mailsdk.cli._options import Common, command_body, common_options
from mailsdk.cli._terminal import emit_json, safe
from mailsdk.errors import ConfigurationError

__all__ = ["token_command"]


@click.command("token")
@common_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--show", is_flag=True, help="Also print the access token itself (careful).")
@click.option("--force", is_flag=True, help="Ignore cached tokens and ask the provider anew.")
@command_body
def token_command(common: Common, show: bool, force: bool) -> int:
    """Acquire an OAuth access token with a profile's provider; show its expiry and scopes."""
    profile = common.profile()
    if profile.oauth is None:
        name = profile.name or "(none selected)"
        raise ConfigurationError(f"profile {name}: no [oauth] table; see `mailsdk config check`")
    user = profile.get("user")
    provider, scopes = token_provider_for(profile, user)
    token = provider.get_token(force_refresh=force)
    now = time.time()
    expires_at = token.expires_at
    data: dict[str, typing.Any] = {
        "profile": profile.name,
        "provider": profile.oauth["provider"],
        "user": getattr(provider, "username", None) or user,
        "scopes": scopes,
        "expires_at": (
            datetime.datetime.fromtimestamp(expires_at, datetime.UTC).isoformat()
            if expires_at is not None
            else None
        ),
        "expires_in": int(expires_at - now) if expires_at is not None else None,
        "cached_in": profile.oauth.get("cache_file"),
    }
    if show:
        data["access_token"] = token.token.reveal()
    if common.json:
        emit_json(data)
        return ExitCode.OK
    click.echo(f"profile    {safe(data['profile'])} ({safe(data['provider'])})")
    click.echo(f"user       {safe(data['user'] or '-')}")
    click.echo(f"scopes     {' '.join(safe(s) for s in scopes)}")
    if expires_at is None:
        click.echo("expires    unknown")
    else:
        click.echo(f"expires    {data['expires_at']} (in {data['expires_in']} s)")
    if data["cached_in"]:
        click.echo(f"cache      {safe(data['cached_in'])}")
    if show:
        # the identity provider's text: escaped like any server text (a real token is printable)
        click.echo(safe(token.token.reveal()))
    return ExitCode.OK
