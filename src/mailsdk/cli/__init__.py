"""The ``mailsdk`` command line (also ``python -m mailsdk``).

Layer: L8 command line, the top. May import everything; nothing imports it.

Commands, one module each: ``demo`` (no configuration: an in-process server, a few messages and a
small batch, the delivery report and the recorded spans), ``send`` (one message, like swaks or
``sendmail -t``), ``batch`` (CSV/JSONL rows or a folder of .eml files, with a JSONL report),
``probe`` (what a server offers: TLS, certificate, extensions, AUTH), ``token`` (OAuth through a
profile) and ``config check``. Shared options live in :mod:`mailsdk.cli._options`, profiles in
:mod:`mailsdk.profiles`, exit codes in :mod:`mailsdk.cli._exit`.

The command line is an extra: ``pip install 'mailsdk[cli]'`` (``mailsdk[demo]`` includes it).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

#: Exit status for a usage or configuration error (see ``mailsdk.cli._exit.ExitCode``).
_USAGE = 4


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mailsdk`` command. Returns the process exit code.

    Args:
        argv: the arguments after the program name; ``None`` reads ``sys.argv``.
    """
    try:
        from mailsdk.cli._app import run
    except ImportError as exc:  # pragma: no cover - depends on the install
        name = getattr(exc, "name", None) or "a dependency"
        sys.stderr.write(
            f"error: the mailsdk command line needs {name}: pip install 'mailsdk[cli]'\n"
        )
        return _USAGE
    return run(argv)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
