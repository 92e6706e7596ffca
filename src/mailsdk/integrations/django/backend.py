# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# (Django ships no type information: its objects are Unknown to a strict checker.)
"""``EmailBackend``: Django's email backend protocol on a mailsdk connection pool.

Layer: L7 (integrations.django). Imports ``django`` (the extra), ``mailsdk.pool``/``batch``/
``client``/``flows`` and the private integration helpers.

Django calls ``open()``, ``send_messages(messages)`` and ``close()`` (or only ``send_messages``,
which then opens and closes around itself); ``get_connection()`` users keep one backend across
many ``send_messages`` calls and so its connections. ``open()`` creates a :class:`~mailsdk.Pool`
of ``MAILSDK_POOL_SIZE`` connections and opens the first (so a bad host or password fails
there, as with Django's SMTP backend); ``send_messages`` hands the whole list to
``pool.send_batch`` (each connection pipelines its share with ``send_many``; one outcome per
message: a refused message does not stop the others) and returns how many the server accepted.
Unless ``fail_silently``, the first failure (in message order) is raised after every message was
tried. A transient failure gets one immediate second try (see ``_ONE_MORE_TRY``); an UNKNOWN
outcome is never resent (it may have been queued).
"""

from __future__ import annotations

import email.utils
import threading
import typing
from collections.abc import Sequence

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend

from mailsdk.batch import RetryPolicy
from mailsdk.client import Client
from mailsdk.errors import ConfigurationError, InvalidInputError, MailError
from mailsdk.flows import Outgoing, SendOutcome
from mailsdk.integrations._wire import encode_item
from mailsdk.integrations.django._settings import BackendOptions, build_client, load_object

if typing.TYPE_CHECKING:
    from mailsdk.pool import Pool

__all__ = ["EmailBackend"]


#: A message not accepted for a transient reason (most often: a kept connection the server had
#: dropped meanwhile, so it was never handed over) gets one immediate second try, on a fresh
#: connection. UNKNOWN outcomes are never resent.
_ONE_MORE_TRY = RetryPolicy(attempts=2, backoff=0.0, jitter=0.0, max_elapsed=None)


def _setting(name: str, default: typing.Any = None) -> typing.Any:
    return getattr(settings, name, default)


def _address(value: object) -> str:
    """The one address in ``value`` (``"Name <a@b>"`` or ``"a@b"``).

    ``parseaddr`` alone returns the first address it can make out and drops the rest, so
    ``"a@x, b@y"`` or ``"a@x\r\nRCPT TO:<c@z>"`` would quietly go to ``a@x`` only: refuse those.
    """
    if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
        raise InvalidInputError("an email address of the message is malformed")
    found = email.utils.getaddresses([value])
    if len(found) != 1 or not found[0][1]:
        raise InvalidInputError("an email address of the message is empty or is not one address")
    return found[0][1]


class EmailBackend(BaseEmailBackend):  # type: ignore[misc]
    """A Django email backend sending through mailsdk.

    Args:
        host, port, username, password, use_tls, use_ssl, timeout, ssl_keyfile, ssl_certfile:
            Django's SMTP backend arguments; default to the ``EMAIL_*`` settings.
        fail_silently: swallow errors (Django's contract).
        **kwargs: passed to Django's base class.

    Raises:
        ConfigurationError: invalid settings (at construction, never mid-send).
    """

    def __init__(  # noqa: PLR0917 (Django's SMTP backend signature)
        self,
        host: str | None = None,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool | None = None,
        fail_silently: bool = False,
        use_ssl: bool | None = None,
        timeout: float | None = None,
        ssl_keyfile: str | None = None,
        ssl_certfile: str | None = None,
        **kwargs: typing.Any,
    ) -> None:
        super().__init__(fail_silently=fail_silently, **kwargs)
        pool_size = _setting("MAILSDK_POOL_SIZE", 1)
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ConfigurationError("MAILSDK_POOL_SIZE must be an int >= 1")
        self._options = BackendOptions(
            host=host or _setting("EMAIL_HOST", "localhost"),
            port=port if port is not None else _setting("EMAIL_PORT", 25),
            username=_setting("EMAIL_HOST_USER") if username is None else username,
            password=_setting("EMAIL_HOST_PASSWORD") if password is None else password,
            use_tls=bool(_setting("EMAIL_USE_TLS", False) if use_tls is None else use_tls),
            use_ssl=bool(_setting("EMAIL_USE_SSL", False) if use_ssl is None else use_ssl),
            timeout=_setting("EMAIL_TIMEOUT") if timeout is None else timeout,
            ssl_certfile=ssl_certfile or _setting("EMAIL_SSL_CERTFILE"),
            ssl_keyfile=ssl_keyfile or _setting("EMAIL_SSL_KEYFILE"),
            tls_mode=_setting("MAILSDK_TLS_MODE"),
            ca_file=_setting("MAILSDK_CA_FILE"),
            token_provider=_setting("MAILSDK_TOKEN_PROVIDER"),
            client=_setting("MAILSDK_CLIENT"),
            pool_size=pool_size,
            profile=_setting("MAILSDK_PROFILE"),
            config_file=_setting("MAILSDK_CONFIG_FILE"),
        )
        self._client: Client | None = None
        self._pool: Pool | None = None
        self._lock = threading.RLock()
        self._tasks_path: str | None = _setting("MAILSDK_CELERY_TASKS")
        self._tasks: typing.Any = None
        if self._tasks_path is not None:
            # Resolved now: a wrong path found at send time was swallowed by fail_silently, and
            # every message was dropped without a word.
            self._tasks = load_object(str(self._tasks_path), "MAILSDK_CELERY_TASKS")
            if not hasattr(self._tasks, "send_chunk"):
                raise ConfigurationError(
                    "MAILSDK_CELERY_TASKS must name what mailsdk.integrations.celery.install "
                    "returned"
                )
        if not self.fail_silently or self._tasks_path is None:
            self._client = build_client(self._options)

    def __repr__(self) -> str:
        opts = self._options
        return f"<mailsdk EmailBackend {opts.host}:{opts.port} open={self._pool is not None}>"

    @property
    def client(self) -> Client:
        """The mailsdk client (built from the settings on first use)."""
        if self._client is None:
            self._client = build_client(self._options)
        return self._client

    # Django's stub-less base says None; Django's own SMTP backend returns a bool too.
    def open(self) -> bool:  # pyright: ignore[reportIncompatibleMethodOverride]
        """Create the pool and open its first connection; ``True`` when a new pool was made."""
        with self._lock:
            if self._pool is not None and not self._pool.closed:
                return False
            pool = self.client.pool(max_connections=self._options.pool_size)
            try:
                with pool.connection():
                    pass  # connect, TLS and AUTH now: errors belong to open()
            except MailError:
                pool.close()
                if not self.fail_silently:
                    raise
                return False
            self._pool = pool
            return True

    def close(self) -> None:
        """QUIT and close the pooled connections (one the server already dropped is fine)."""
        with self._lock:
            pool, self._pool = self._pool, None
            if pool is None:
                return
            try:
                pool.close()
            except MailError:
                if not self.fail_silently:
                    raise

    def _items(self, messages: Sequence[typing.Any]) -> list[Outgoing]:
        items = []
        for message in messages:
            recipients = [_address(r) for r in message.recipients()]
            if not recipients:
                continue
            data = message.message().as_bytes(linesep="\r\n")
            items.append(
                Outgoing(data, sender=_address(message.from_email), recipients=tuple(recipients))
            )
        return items

    def send_messages(self, email_messages: Sequence[typing.Any]) -> int:
        """Send Django ``EmailMessage`` objects; return how many the server accepted.

        With ``MAILSDK_CELERY_TASKS`` set, they are handed to the Celery workers instead and
        the number queued is returned.
        """
        if not email_messages:
            return 0
        try:
            items = self._items(email_messages)
        except MailError:
            if not self.fail_silently:
                raise
            return 0
        if not items:
            return 0
        if self._tasks_path is not None:
            return self._hand_off(items)
        with self._lock:
            new = self.open()
            if self._pool is None:
                return 0  # opening failed silently
            try:
                return self._send(self._pool, items)
            finally:
                if new:
                    self.close()

    def _send(self, pool: Pool, items: Sequence[Outgoing]) -> int:
        outcomes: list[SendOutcome] = []
        run = pool.send_batch(items, retry=_ONE_MORE_TRY, ordered=True)
        try:
            outcomes.extend(run)
        except MailError:
            # The batch gave up (a permanent connect failure): what finished is in the report.
            if not self.fail_silently:
                raise
            outcomes = list(run.report.outcomes)
        finally:
            run.close()
        sent = sum(1 for o in outcomes if o.status.delivered)
        failed = sorted((o for o in outcomes if not o.status.delivered), key=lambda o: o.index)
        if failed and not self.fail_silently:
            first = failed[0]
            raise first.error or MailError(f"message {first.index} was not sent")
        return sent

    def _hand_off(self, items: Sequence[Outgoing]) -> int:
        try:
            tasks = self._tasks
            payloads = [encode_item(item) for item in items]
            for index, payload in enumerate(payloads):
                payload["index"] = index
                # The ledger key: the Message-ID *and* the envelope. Django users cannot set
                # Outgoing.key, and one Message-ID sent to different people (a fixed header
                # with send_mass_mail) is several deliveries: keyed by the Message-ID alone,
                # the ledger called every one after the first a duplicate and dropped it.
                payload["key"] = f"{payload['key']} to {','.join(sorted(payload['recipients']))}"
            keys = [payload["key"] for payload in payloads]
            if len(set(keys)) != len(keys):
                raise InvalidInputError(
                    "two messages of one send_messages call share a Message-ID and recipients"
                )
            # The caller's trace context travels with the task, as with send_batch.
            from opentelemetry import propagate

            from mailsdk.integrations.celery import TRACE_HEADER

            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            tasks.send_chunk.apply_async(
                kwargs={"items": payloads}, headers={TRACE_HEADER: carrier}
            )
        except Exception:
            if not self.fail_silently:
                raise
            return 0
        return len(items)
