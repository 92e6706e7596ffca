"""``python -m mailsdk``: the same as the ``mailsdk`` command."""

from __future__ import annotations

from mailsdk.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
