"""The ``mailsdk`` command group: registers one command per module and maps click's own
errors to the documented exit codes.

Layer: L8 command line (private).
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from mailsdk._version import __version__
from mailsdk.cli._exit import ExitCode
from mailsdk.cli._terminal import guard_stdout
from mailsdk.cli.batch import batch_command
from mailsdk.cli.config_check import config_group
from mailsdk.cli.demo import demo_command
from mailsdk.cli.probe import probe_command
from mailsdk.cli.send import send_command
from mailsdk.cli.token import token_command

__all__ = ["cli", "run"]

EPILOG = (
    "Exit codes: 0 all accepted; 1 some recipients refused; 2 permanent failure; "
    "3 transient failure or unknown outcome; 4 usage or configuration error; 130 interrupted."
)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EPILOG,
)
@click.version_option(__version__, prog_name="mailsdk", message="%(prog)s %(version)s")
def cli() -> None:
    """mailsdk: send mail over SMTP/LMTP from scripts, probe servers, get OAuth tokens.

    Start with `mailsdk demo` (no configuration needed). Secrets are read from the environment,
    a 0600 file or a prompt, never from arguments.
    """


for command in (
    demo_command,
    send_command,
    batch_command,
    probe_command,
    token_command,
    config_group,
):
    cli.add_command(command)


def run(argv: Sequence[str] | None) -> int:
    """Run the command line; returns the exit code instead of exiting."""
    guard_stdout()  # a closed pipe on stdout must not turn a delivered message into exit 3
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="mailsdk",
            standalone_mode=False,
        )
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return ExitCode.INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return ExitCode.USAGE
    if isinstance(result, int):
        return result
    return ExitCode.OK
