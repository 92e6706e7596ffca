"""Configure Django once per test process (``settings.configure``) for the backend tests.

Layer: test support only. Django allows one ``configure`` per process; tests then change the
``EMAIL_*``/``MAILSDK_*`` values they need with ``django.test.override_settings``.
"""

from __future__ import annotations

__all__ = ["ensure_django"]


def ensure_django() -> None:
    """Configure Django with the mailsdk backend if nothing configured it yet."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            EMAIL_BACKEND="mailsdk.integrations.django.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=25,
            DEFAULT_FROM_EMAIL="webmaster@client.test",
            USE_TZ=True,
            INSTALLED_APPS=[],
        )
        django.setup()
