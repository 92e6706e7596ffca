"""Django email backend (extra ``django``).

In settings: ``EMAIL_BACKEND = "mailsdk.integrations.django.EmailBackend"``.

Layer: L7 (integrations). Needs ``django`` (``pip install mailsdk[django]``). See
docs/scaling-out.md for the settings.
"""

from __future__ import annotations

from mailsdk.integrations.django.backend import EmailBackend

__all__ = ["EmailBackend"]
