"""The options every command shares, the error boundary, and the command context.

Layer: L8 command line (private). One place for ``--config``, ``--profile``, ``--debug``, the
connection options (``--server``, ``--tls``, ``--user``, ``--auth``, ``--password-env``,
``--ca-file``, ``--timeout``, ``--local-hostname``, ``--lmtp``) and the output options
(``--wire``, ``--json``), so every command spells and documents them the same way.
"""

from __future__ import annotations

import functools
import sys
import typing
from collections.abc import Callable

import attrs
import click

from mailsdk.cli._connect import ConnectionOptions
from mailsdk.cli._exit import ExitCode, describe, exit_code_for
from mailsdk.cli._terminal import disable_wire, emit_json, enable_wire
from mailsdk.errors import MailError
from mailsdk.profiles import ConfigFile, Profile, load_config

__all__ = ["Common", "command_body", "common_options", "connection_options", "output_options"]

F = typing.TypeVar("F", bound=Callable[..., typing.Any])

TLS_MODES: typing.Final = ("implicit", "starttls", "opportunistic", "none")


@attrs.frozen(kw_only=True)
class Common:
    """What every command receives: the configuration, the profile, output switches."""

    config_path: str | None
    profile_name: str | None
    debug: bool
    wire: bool = False
    json: bool = False
    connection: ConnectionOptions = attrs.field(factory=ConnectionOptions)

    def config(self) -> ConfigFile:
        """The parsed configuration file (raises ``ConfigurationError``)."""
        return load_config(self.config_path)

    def profile(self) -> Profile:
        """The selected profile (an empty one when none is selected)."""
        return self.config().profile(self.profile_name)


def common_options(f: F) -> F:
    """``--config``, ``--profile``, ``--debug``."""
    f = click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")(f)
    f = click.option(
        "--profile",
        "profile_name",
        metavar="NAME",
        envvar="MAILSDK_PROFILE",
        help="Profile from the configuration file [env: MAILSDK_PROFILE].",
    )(f)
    return click.option(
        "--config",
        "config_path",
        metavar="PATH",
        type=click.Path(dir_okay=False),
        help="Configuration file [env: MAILSDK_CONFIG; default ~/.config/mailsdk/config.toml].",
    )(f)


def connection_options(f: F) -> F:
    """Where to connect and how to authenticate."""
    options = [
        click.option(
            "--server",
            metavar="HOST[:PORT]|URL",
            help="Server, e.g. mail.example.com:587 or smtps://mail.example.com "
            "[env: MAILSDK_SERVER].",
        ),
        click.option(
            "--tls",
            type=click.Choice(TLS_MODES),
            help="implicit (465), starttls (required; the default), opportunistic, none.",
        ),
        click.option("--user", metavar="NAME", help="Authenticate as NAME [env: MAILSDK_USER]."),
        click.option(
            "--auth",
            metavar="MECH",
            multiple=True,
            help="SASL mechanism to use (repeatable, strongest first), e.g. SCRAM-SHA-256.",
        ),
        click.option(
            "--password-env",
            metavar="VAR",
            help="Read the password from environment variable VAR (default MAILSDK_PASSWORD; "
            "else a prompt). Never pass secrets as arguments.",
        ),
        click.option(
            "--ca-file",
            metavar="PATH",
            help="Trust the CAs in this PEM file instead of the system store.",
        ),
        click.option(
            "--timeout", type=float, metavar="SECONDS", help="One deadline for every phase."
        ),
        click.option("--local-hostname", metavar="NAME", help="The name sent in EHLO."),
        click.option("--lmtp", is_flag=True, help="Speak LMTP (RFC 2033) instead of SMTP."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def output_options(f: F) -> F:
    """``--wire`` and ``--json``."""
    f = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")(
        f
    )
    return click.option(
        "--wire", is_flag=True, help="Print the SMTP conversation on stderr (AUTH redacted)."
    )(f)


def _common(kwargs: dict[str, typing.Any]) -> Common:
    connection = ConnectionOptions(
        server=kwargs.pop("server", None),
        tls=kwargs.pop("tls", None),
        user=kwargs.pop("user", None),
        auth=tuple(kwargs.pop("auth", ())),
        password_env=kwargs.pop("password_env", None),
        ca_file=kwargs.pop("ca_file", None),
        timeout=kwargs.pop("timeout", None),
        local_hostname=kwargs.pop("local_hostname", None),
        lmtp=bool(kwargs.pop("lmtp", False)),
    )
    return Common(
        config_path=kwargs.pop("config_path", None),
        profile_name=kwargs.pop("profile_name", None),
        debug=bool(kwargs.pop("debug", False)),
        wire=bool(kwargs.pop("wire", False)),
        json=bool(kwargs.pop("as_json", False)),
        connection=connection,
    )


def _port_and_tls(common: Common) -> tuple[int | None, str | None]:
    server = common.connection.server or ""
    port: int | None = None
    if ":" in server and "://" not in server:
        tail = server.rsplit(":", 1)[1]
        port = int(tail) if tail.isdigit() else None
    tls = common.connection.tls
    if tls is None and server:
        tls = "implicit" if port == 465 else "starttls"
    return port, tls


def command_body(f: Callable[..., int]) -> Callable[..., int]:
    """Wrap a command: build :class:`Common`, run, turn errors into one line and an exit code.

    ``--debug`` lets the traceback through. Ctrl-C exits with 130.
    """

    @functools.wraps(f)
    def run(**kwargs: typing.Any) -> int:
        common = _common(kwargs)
        handler = enable_wire() if common.wire else None
        try:
            return f(common, **kwargs)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            return ExitCode.INTERRUPTED
        except (MailError, OSError) as exc:
            if common.debug:
                raise
            port, tls = _port_and_tls(common)
            code = exit_code_for(exc)
            if common.json:
                emit_json(
                    {
                        "status": "error",
                        "exit_code": int(code),
                        "error": error_json(exc),
                    }
                )
            click.echo(describe(exc, port=port, tls=tls), err=True)
            return code
        finally:
            if handler is not None:
                disable_wire(handler)
            sys.stderr.flush()

    return run


def error_json(exc: BaseException) -> dict[str, typing.Any]:
    """An error as JSON: type, message and, for server refusals, the reply."""
    data: dict[str, typing.Any] = {"type": type(exc).__name__, "message": str(exc)}
    reply = getattr(exc, "reply", None)
    if reply is not None:
        data["reply"] = reply_json(reply)
    return data


def reply_json(reply: typing.Any) -> dict[str, typing.Any]:
    """A :class:`~mailsdk.Reply` as JSON."""
    enhanced = reply.enhanced
    return {
        "code": reply.code,
        "enhanced": str(enhanced) if enhanced is not None else None,
        "text": reply.text,
    }
