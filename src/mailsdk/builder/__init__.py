"""ClientBuilder: a typed, immutable, fluent way to compose a client.

Layer: L6 composition. May import everything below (L0-L5); never api, compat or cli.

Each ``with_*`` call returns a *new* builder (``attrs.evolve``) and refuses an argument of the
wrong type at once with a :class:`~mailsdk.errors.ConfigurationError` naming the method, the
parameter and what it expects. The rules between settings are checked by
:meth:`ClientBuilder.build` / :meth:`ClientBuilder.build_async`, e.g. credentials over a
plaintext link without ``allow_plaintext=True``.

Example::

    client = (
        ClientBuilder.smtp("mail.example.com", 587)
        .with_credentials("me@example.com", password)
        .with_opentelemetry()
        .build()
    )
    with client.connect() as session:
        session.send_message(msg)
"""

from __future__ import annotations

from mailsdk.builder._builder import ClientBuilder

__all__ = ["ClientBuilder"]
