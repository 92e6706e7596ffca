"""mailsdk.compat: drop-in adapters for code written against other mail libraries.

Layer: L7 (compat). A namespace only: import the adapter you need, e.g.
``from mailsdk.compat import smtplib``. May import every layer below; never ``mailsdk.api``.
"""

from __future__ import annotations

__all__: list[str] = []
