"""``mailsdk config check``: validate the configuration file without connecting.

Layer: L8 command line. Parses the TOML file, checks every profile's keys and types, that its
secrets are available (the environment variable is set, the file exists and is 0600) and that
the settings form a valid client configuration (TLS mode, credentials never over plaintext...).
Secrets are read to check them, never printed.
"""

from __future__ import annotations

import typing

import click

from mailsdk.cli._connect import builder_for
from mailsdk.cli._exit import ExitCode
from mailsdk.cli._options import Common, command_body, common_options
from mailsdk.cli._terminal import emit_json, safe
from mailsdk.errors import MailError
from mailsdk.profiles import Profile

__all__ = ["config_group"]


def _check(common: Common, profile: Profile) -> str | None:
    try:
        builder = builder_for(common.connection, profile, prompt=False)
        builder.config()  # validates the cross-field rules
    except MailError as exc:
        return str(exc)
    return None


@click.group("config")
def config_group() -> None:
    """Inspect the configuration file and profiles."""


@config_group.command("check")
@common_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@command_body
def check_command(common: Common) -> int:
    """Check every profile (or only --profile NAME); exit 4 when one is broken."""
    config = common.config()
    names = [common.profile_name] if common.profile_name else sorted(config.profiles)
    results: dict[str, str | None] = {}
    for name in names:
        results[name] = _check(common, config.profile(name))
    ok = all(v is None for v in results.values())
    if common.json:
        data: dict[str, typing.Any] = {
            "path": str(config.path),
            "exists": config.exists,
            "default_profile": config.default_profile,
            "profiles": {n: {"ok": e is None, "error": e} for n, e in results.items()},
        }
        emit_json(data)
    else:
        state = "" if config.exists else " (does not exist: no profiles)"
        click.echo(f"config  {safe(config.path)}{state}")
        for name, error in results.items():
            mark = "default" if name == config.default_profile else ""
            if error is None:
                click.echo(f"  ok      {safe(name)} {mark}".rstrip())
            else:
                click.echo(f"  BROKEN  {safe(name)}: {safe(error)}")
    return ExitCode.OK if ok else ExitCode.USAGE
