"""The ``mailsdk`` command line: ``mailsdk demo`` (and ``--version``).

Layer: L8 command line, the top. May import everything; nothing imports it.

``mailsdk demo`` starts an in-process SMTP server on loopback (aiosmtpd, STARTTLS with an
ephemeral CA, AUTH), sends a few messages through the real client stack — one recipient is
refused among accepted ones — and prints a delivery report. It needs no mail server and no
network: ``pip install 'mailsdk[demo]' && mailsdk demo``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mailsdk._version import __version__

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailsdk", description="mailsdk: a typed SMTP/LMTP client SDK"
    )
    parser.add_argument("--version", action="version", version=f"mailsdk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="send a few messages to an in-process SMTP server and print a delivery report",
        description="Starts an SMTP server on 127.0.0.1 (no network, no mail server needed), "
        "sends messages through the real client (STARTTLS, AUTH, pipelining), one "
        "recipient refused, and prints what happened to each recipient.",
    )
    demo.add_argument(
        "--async", dest="use_async", action="store_true", help="use the asyncio client"
    )
    demo.add_argument(
        "--wire", action="store_true", help="also print the SMTP conversation (AUTH redacted)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mailsdk`` command. Returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from mailsdk.cli.demo import run_demo
        from mailsdk.errors import ConfigurationError

        try:
            return run_demo(use_async=args.use_async, wire=args.wire, out=sys.stdout)
        except ConfigurationError as exc:  # e.g. aiosmtpd missing: one line, no traceback
            sys.stderr.write(f"mailsdk demo: {exc}\n")
            return 1
    _parser().print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
