"""Worker settings read from the Celery app's configuration, and what they build.

Layer: L7 (integrations.celery, private). Imports ``mailsdk.builder``/``client``, the Redis
integration and L0; reads ``app.conf`` only through :func:`settings_from`.

The keys (all optional except ``mailsdk_client`` or ``mailsdk_profile``)::

    mailsdk_client = "myproject.mail:build_client"   # "module:callable" -> Client or ClientBuilder
    mailsdk_profile = "work"                          # ... or a profile of the mailsdk config file
    mailsdk_config = "/etc/mailsdk/config.toml"       # that file (default: $MAILSDK_CONFIG, XDG)
    mailsdk_redis_url = "redis://..."                 # limits + ledger (see REDIS_URL_ENV)
    mailsdk_message_rates = [Rate.per_second(10)]     # cluster-wide message Rates
    mailsdk_recipient_rates = [Rate.per_minute(3000)] # cluster-wide recipient Rates
    mailsdk_max_connections = 4                       # cluster-wide connection cap
    mailsdk_pool_size = 1                             # connections per worker process
    mailsdk_limits_name = "default"                   # the shared budget's name
    mailsdk_ledger = "default"                        # ledger name; None/False turns it off
    mailsdk_claim_ttl = 300.0                         # seconds (see DeliveryLedger)
    mailsdk_lease_ttl = 30.0                          # seconds (see RedisConnectionLimiter)
    mailsdk_idle_timeout = 5.0                        # close an idle connection after this
    mailsdk_retry = {"attempts": 5, "backoff": 2.0}   # RetryPolicy fields, or a RetryPolicy
"""

from __future__ import annotations

import importlib
import math
import os
import typing
from collections.abc import Callable, Mapping, Sequence

import attrs

from mailsdk.batch import RetryPolicy
from mailsdk.builder import ClientBuilder
from mailsdk.client import Client
from mailsdk.errors import ConfigurationError

if typing.TYPE_CHECKING:
    from mailsdk.integrations.redis import Rate

#: The Celery retry schedule when ``mailsdk_retry`` is not set: 5 tries, 2 s doubling to 5 min.
DEFAULT_RETRY: typing.Final = RetryPolicy(attempts=5, backoff=2.0, max_delay=300.0)

__all__ = [
    "DEFAULT_RETRY",
    "REDIS_URL_ENV",
    "WorkerSettings",
    "load_factory",
    "profile_factory",
    "settings_from",
]


def _retry_policy(value: object) -> RetryPolicy:
    """``mailsdk_retry``: a :class:`~mailsdk.batch.RetryPolicy`, or a mapping of its fields."""
    if value is None:
        return DEFAULT_RETRY
    if isinstance(value, RetryPolicy):
        return value
    if not isinstance(value, Mapping):
        raise ConfigurationError("mailsdk_retry must be a RetryPolicy or a mapping of its fields")
    try:
        return RetryPolicy(**typing.cast("Mapping[str, typing.Any]", value))
    except TypeError:
        fields = ", ".join(a.name for a in attrs.fields(RetryPolicy))
        raise ConfigurationError(f"mailsdk_retry takes the RetryPolicy fields: {fields}") from None
    except ValueError as exc:
        raise ConfigurationError(f"mailsdk_retry: {exc}") from None


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


def profile_factory(name: str, path: str | None) -> Callable[[], Client]:
    """A factory building the client of profile ``name`` of the config file at ``path``.

    The file is read now (a missing profile fails at start-up); the secrets when the client is
    built, in the worker process.

    Raises:
        ConfigurationError: the file or the profile is missing or malformed.
    """
    from mailsdk.profiles import builder_for_profile, load_config

    load_config(path).profile(name)

    def build() -> Client:
        return builder_for_profile(load_config(path).profile(name)).build()

    return build


def _rates(conf: Mapping[str, typing.Any], key: str) -> tuple[Rate, ...]:
    """``mailsdk_message_rates`` / ``mailsdk_recipient_rates``: Rates (a list, or just one)."""
    from mailsdk.integrations.redis import Rate

    value = conf.get(key)
    if value is None:
        return ()
    items = (value,) if isinstance(value, Rate) else value
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Sequence):
        raise ConfigurationError(f"{key} must be a list of mailsdk.integrations.redis.Rate")
    rates = tuple(typing.cast("Sequence[object]", items))
    if not all(isinstance(rate, Rate) for rate in rates):
        raise ConfigurationError(
            f"{key} must be a list of mailsdk.integrations.redis.Rate, e.g. [Rate.per_second(10)]"
        )
    return typing.cast("tuple[Rate, ...]", rates)


def _name(key: str, value: object) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ConfigurationError(f"{key} must be a non-empty word, not {value!r}")
    return value


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

    client: str | None
    redis_url: str | None = attrs.field(repr=False)  # may carry a password
    message_rates: Sequence[Rate]
    recipient_rates: Sequence[Rate]
    max_connections: int | None
    pool_size: int
    limits_name: str
    ledger: str | None
    claim_ttl: float
    lease_ttl: float
    idle_timeout: float
    retry: RetryPolicy
    profile: str | None = None
    config: str | None = None

    def client_factory(self) -> Callable[[], Client]:
        """What builds the worker's client: ``mailsdk_client``, else ``mailsdk_profile``."""
        if self.client is not None:
            return load_factory(self.client)
        assert self.profile is not None  # settings_from guarantees one of the two
        return profile_factory(self.profile, self.config)


#: Where the worker reads the Redis URL when ``mailsdk_redis_url`` is not set (the review
#: command reads the same variable). Celery masks the passwords of the settings it knows
#: (``broker_url``...) in ``celery report`` and ``celery inspect conf``, not of
#: ``mailsdk_redis_url``: a password belongs here, or in the broker URL.
REDIS_URL_ENV: typing.Final = "MAILSDK_REDIS_URL"


def _redis_url(conf: Mapping[str, typing.Any]) -> str | None:
    url = conf.get("mailsdk_redis_url")
    if url is None:
        url = os.environ.get(REDIS_URL_ENV) or None
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
    client, profile = conf.get("mailsdk_client"), conf.get("mailsdk_profile")
    config = conf.get("mailsdk_config")
    if (client is None) == (profile is None):
        raise ConfigurationError(
            "set one of mailsdk_client = 'module:callable' and mailsdk_profile = 'name' "
            "in the Celery config"
        )
    if client is not None and not isinstance(client, str):
        raise ConfigurationError("mailsdk_client must be a 'module:callable' string")
    if profile is not None and not isinstance(profile, str):
        raise ConfigurationError("mailsdk_profile must be a profile name")
    if config is not None and not isinstance(config, str):
        raise ConfigurationError("mailsdk_config must be a file path")
    retry = _retry_policy(conf.get("mailsdk_retry"))
    cap = conf.get("mailsdk_max_connections")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ConfigurationError("mailsdk_max_connections must be an int >= 1")
    size = conf.get("mailsdk_pool_size", 1)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigurationError("mailsdk_pool_size must be an int >= 1")
    ledger = conf.get("mailsdk_ledger", "default")
    if ledger is True:
        ledger = "default"
    settings = WorkerSettings(
        client=client,
        redis_url=_redis_url(conf),
        message_rates=_rates(conf, "mailsdk_message_rates"),
        recipient_rates=_rates(conf, "mailsdk_recipient_rates"),
        max_connections=cap,
        pool_size=size,
        limits_name=_name("mailsdk_limits_name", conf.get("mailsdk_limits_name", "default")),
        ledger=_name("mailsdk_ledger", ledger) if ledger else None,
        claim_ttl=_number(conf, "mailsdk_claim_ttl", 300.0),
        lease_ttl=_number(conf, "mailsdk_lease_ttl", 30.0),
        idle_timeout=_number(conf, "mailsdk_idle_timeout", 5.0),
        retry=retry,
        profile=profile,
        config=config,
    )
    needs_redis = settings.message_rates or settings.recipient_rates or cap or settings.ledger
    if needs_redis and settings.redis_url is None:
        raise ConfigurationError(
            "limits and the ledger need Redis: set mailsdk_redis_url, $MAILSDK_REDIS_URL or a "
            "redis:// broker"
        )
    if profile is not None:
        profile_factory(profile, config)  # the file and the profile exist (fails at start-up)
    return settings
