"""Worker settings read from the Celery app's configuration, and what they build.

Layer: L7 (integrations.celery, private). Imports ``mailsdk.builder``/``client``, the Redis
integration and L0; reads ``app.conf`` only through :func:`settings_from`.

The keys (all optional except ``mailsdk_client``)::

    mailsdk_client = "myproject.mail:build_client"   # "module:callable" -> Client or ClientBuilder
    mailsdk_redis_url = "redis://..."                 # limits + ledger; default: the broker URL
    mailsdk_message_rates = [Rate.per_second(10)]     # cluster-wide message Rates
    mailsdk_recipient_rates = [Rate.per_minute(3000)] # cluster-wide recipient Rates
    mailsdk_max_connections = 4                       # cluster-wide connection cap
    mailsdk_limits_name = "default"                   # the shared budget's name
    mailsdk_ledger = "default"                        # ledger name; None/False turns it off
    mailsdk_claim_ttl = 300.0                         # seconds (see DeliveryLedger)
    mailsdk_lease_ttl = 30.0                          # seconds (see RedisConnectionLimiter)
    mailsdk_idle_timeout = 5.0                        # close an idle connection after this
    mailsdk_retry = {"attempts": 5, "backoff": 2.0, "max_delay": 300.0}  # or a RetryPolicy
"""

from __future__ import annotations

import importlib
import math
import typing
from collections.abc import Callable, Mapping, Sequence

import attrs

from mailsdk.builder import ClientBuilder
from mailsdk.client import Client
from mailsdk.errors import ConfigurationError

if typing.TYPE_CHECKING:
    from mailsdk.integrations.redis import Rate

__all__ = [
    "RetryPolicyLike",
    "RetrySchedule",
    "WorkerSettings",
    "load_factory",
    "settings_from",
]


class RetryPolicyLike(typing.Protocol):
    """The batch engine's ``RetryPolicy`` shape: ``attempts`` and ``delay(tries)``."""

    @property
    def attempts(self) -> int:
        """The most tries per message, the first one included."""
        ...

    def delay(self, tries: int) -> float:
        """Seconds before the next try, after ``tries`` tries."""
        ...


@attrs.frozen
class RetrySchedule:
    """Exponential backoff for transient failures (the batch engine's ``RetryPolicy`` shape;
    a ``RetryPolicy`` can be given as ``mailsdk_retry`` instead).

    Attributes:
        attempts: tries in all (the first included).
        backoff: the delay before the first retry, in seconds.
        multiplier: each further retry waits this many times longer...
        max_delay: ...up to this many seconds.
    """

    attempts: int = 5
    backoff: float = 2.0
    multiplier: float = 2.0
    max_delay: float = 300.0

    def __attrs_post_init__(self) -> None:
        numbers = (self.backoff, self.multiplier, self.max_delay)
        if isinstance(self.attempts, bool) or self.attempts < 1:
            raise ConfigurationError("mailsdk_retry attempts must be an int >= 1")
        if not all(math.isfinite(n) and n >= 0 for n in numbers):
            raise ConfigurationError("mailsdk_retry delays must be finite and >= 0")

    def delay(self, tries: int) -> float:
        """Seconds before the next try, after ``tries`` tries."""
        return float(min(self.max_delay, self.backoff * self.multiplier ** max(0, tries - 1)))


def load_factory(path: str) -> Callable[[], Client]:
    """Resolve ``"module:callable"``; the callable returns a :class:`Client` or a builder.

    Raises:
        ConfigurationError: the path does not resolve to a callable.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"mailsdk_client must look like 'module:callable', not {path!r}")
    try:
        target: object = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot import mailsdk_client {path!r}: {exc}") from None
    if not callable(target):
        raise ConfigurationError(f"mailsdk_client {path!r} is not callable")
    factory = target

    def build() -> Client:
        made = factory()
        if isinstance(made, ClientBuilder):
            made = made.build()
        if not isinstance(made, Client):
            raise ConfigurationError(
                f"mailsdk_client {path!r} returned {type(made).__name__}, not a Client or builder"
            )
        return made

    return build


def _number(conf: Mapping[str, typing.Any], key: str, default: float) -> float:
    value = conf.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"{key} must be a number of seconds, not {value!r}")
    if value <= 0:
        raise ConfigurationError(f"{key} must be positive, not {value!r}")
    return float(value)


@attrs.frozen
class WorkerSettings:
    """The validated ``mailsdk_*`` settings of one Celery app."""

    client: str
    redis_url: str | None = attrs.field(repr=False)  # may carry a password
    message_rates: Sequence[Rate]
    recipient_rates: Sequence[Rate]
    max_connections: int | None
    limits_name: str
    ledger: str | None
    claim_ttl: float
    lease_ttl: float
    idle_timeout: float
    retry: RetryPolicyLike = attrs.field(repr=False)


def _redis_url(conf: Mapping[str, typing.Any]) -> str | None:
    url = conf.get("mailsdk_redis_url")
    if url is None:
        broker = conf.get("broker_url")
        if isinstance(broker, str) and broker.startswith(("redis://", "rediss://")):
            url = broker
    if url is not None and not isinstance(url, str):
        raise ConfigurationError("mailsdk_redis_url must be a URL string")
    return url


def settings_from(conf: Mapping[str, typing.Any]) -> WorkerSettings:
    """Read and validate the ``mailsdk_*`` keys of a Celery app's ``conf``.

    Raises:
        ConfigurationError: a missing ``mailsdk_client`` or an invalid value (the message names
            the key, never a URL or a password).
    """
    client = conf.get("mailsdk_client")
    if not isinstance(client, str):
        raise ConfigurationError("set mailsdk_client = 'module:callable' in the Celery config")
    retry: object = conf.get("mailsdk_retry") or {}
    schedule: RetryPolicyLike
    if isinstance(retry, Mapping):
        try:
            schedule = RetrySchedule(**typing.cast("Mapping[str, typing.Any]", retry))
        except TypeError:
            raise ConfigurationError(
                "mailsdk_retry takes attempts, backoff, multiplier and max_delay"
            ) from None
    elif hasattr(retry, "attempts") and callable(getattr(retry, "delay", None)):
        schedule = typing.cast("RetryPolicyLike", retry)  # a RetryPolicy (duck-typed above)
    else:
        raise ConfigurationError("mailsdk_retry must be a mapping or a RetryPolicy")
    cap = conf.get("mailsdk_max_connections")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ConfigurationError("mailsdk_max_connections must be an int >= 1")
    ledger = conf.get("mailsdk_ledger", "default")
    if ledger is True:
        ledger = "default"
    settings = WorkerSettings(
        client=client,
        redis_url=_redis_url(conf),
        message_rates=tuple(conf.get("mailsdk_message_rates") or ()),
        recipient_rates=tuple(conf.get("mailsdk_recipient_rates") or ()),
        max_connections=cap,
        limits_name=str(conf.get("mailsdk_limits_name", "default")),
        ledger=str(ledger) if ledger else None,
        claim_ttl=_number(conf, "mailsdk_claim_ttl", 300.0),
        lease_ttl=_number(conf, "mailsdk_lease_ttl", 30.0),
        idle_timeout=_number(conf, "mailsdk_idle_timeout", 5.0),
        retry=schedule,
    )
    needs_redis = settings.message_rates or settings.recipient_rates or cap or settings.ledger
    if needs_redis and settings.redis_url is None:
        raise ConfigurationError(
            "limits and the ledger need Redis: set mailsdk_redis_url (or a redis:// broker)"
        )
    return settings
