"""The ``mailsdk_*`` settings of a Celery app: validation, defaults, secrets kept out of reprs."""

from __future__ import annotations

import pytest

pytest.importorskip("celery", reason="the celery extra is not installed")
pytest.importorskip("redis", reason="the redis extra is not installed")

from mailsdk import Client, ClientBuilder
from mailsdk.batch import RetryPolicy
from mailsdk.errors import ConfigurationError
from mailsdk.integrations.celery import settings_from
from mailsdk.integrations.celery._config import load_factory
from mailsdk.integrations.redis import Rate

BASE = {"mailsdk_client": f"{__name__}:make_builder", "mailsdk_ledger": None}


def make_builder() -> ClientBuilder:
    """A factory returning a builder (the worker builds it)."""
    return ClientBuilder.smtp("127.0.0.1", 2525).with_tls("none")


def make_nothing() -> object:
    """A factory returning the wrong thing."""
    return 42


def test_a_builder_factory_gives_a_client() -> None:
    client = load_factory(f"{__name__}:make_builder")()
    assert isinstance(client, Client)
    with pytest.raises(ConfigurationError, match="returned int"):
        load_factory(f"{__name__}:make_nothing")()
    for bad in ("nocolon", "no.such.module:x", f"{__name__}:missing"):
        with pytest.raises(ConfigurationError):
            load_factory(bad)


def test_defaults_and_the_redis_url_from_the_broker() -> None:
    settings = settings_from({**BASE, "broker_url": "redis://:pw-in-url-77@h:6379/0"})
    assert settings.redis_url == "redis://:pw-in-url-77@h:6379/0"
    assert "pw-in-url-77" not in repr(settings)
    assert settings.max_connections is None and settings.ledger is None
    assert settings.retry.attempts == 5
    assert settings_from({**BASE, "broker_url": "amqp://h//"}).redis_url is None


def test_limits_and_the_ledger_need_redis() -> None:
    with pytest.raises(ConfigurationError, match="need Redis"):
        settings_from({**BASE, "mailsdk_message_rates": [Rate(10)]})
    with pytest.raises(ConfigurationError, match="need Redis"):
        settings_from({"mailsdk_client": BASE["mailsdk_client"]})  # the ledger is on by default


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("mailsdk_max_connections", 0),
        ("mailsdk_max_connections", True),
        ("mailsdk_claim_ttl", -1),
        ("mailsdk_idle_timeout", float("nan")),
        ("mailsdk_retry", {"attempts": 0}),
        ("mailsdk_retry", {"tries": 3}),
        ("mailsdk_retry", "fast"),
        ("mailsdk_retry", {"backoff": -1}),
        ("mailsdk_pool_size", 0),
        ("mailsdk_pool_size", True),
        # Before: a bare TypeError here, or accepted and an AttributeError in every worker.
        ("mailsdk_message_rates", 10),
        ("mailsdk_message_rates", [{"count": 10}]),
        ("mailsdk_recipient_rates", ["100/min"]),
        ("mailsdk_recipient_rates", "100/min"),
        # Before: accepted, then a failure in every worker process at start-up.
        ("mailsdk_limits_name", "two words"),
        ("mailsdk_limits_name", ""),
        ("mailsdk_ledger", "a b"),
        ("mailsdk_ledger", 5),
    ],
)
def test_invalid_values_are_configuration_errors(key: str, value: object) -> None:
    with pytest.raises(ConfigurationError):
        settings_from({**BASE, "mailsdk_redis_url": "redis://h/0", key: value})


def test_missing_client_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="mailsdk_client"):
        settings_from({})


def test_the_celery_retry_backoff_is_the_batch_engines_retry_policy() -> None:
    policy = RetryPolicy(attempts=6, backoff=1.0, multiplier=2.0, max_delay=5.0, jitter=0.0)
    assert [policy.delay(t) for t in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert settings_from({**BASE, "mailsdk_retry": policy}).retry is policy
    mapped = settings_from({**BASE, "mailsdk_retry": {"attempts": 4, "backoff": 0.5}}).retry
    assert isinstance(mapped, RetryPolicy) and (mapped.attempts, mapped.backoff) == (4, 0.5)
    assert isinstance(settings_from(BASE).retry, RetryPolicy)
    assert settings_from(BASE).pool_size == 1
    assert settings_from({**BASE, "mailsdk_pool_size": 3}).pool_size == 3


def test_the_redis_url_may_come_from_the_environment_where_celery_report_cannot_show_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from celery import Celery

    secret = "redis://:pw-env-31@h:6379/1"
    monkeypatch.setenv("MAILSDK_REDIS_URL", secret)
    # Celery masks broker_url in `celery report` / `inspect conf`, never mailsdk_redis_url:
    # a password-bearing URL must have a home outside the Celery config.
    app = Celery("t", broker="amqp://guest:pw-broker-9@h//")
    app.conf.update(BASE, mailsdk_ledger="default")
    settings = settings_from(app.conf)
    assert settings.redis_url == secret and settings.ledger == "default"
    assert "pw-env-31" not in app.bugreport() and "pw-broker-9" not in app.bugreport()
    # An explicit setting still wins over the environment; the environment over the broker.
    assert settings_from({**BASE, "mailsdk_redis_url": "redis://h2/0"}).redis_url == "redis://h2/0"
    assert settings_from({**BASE, "broker_url": "redis://b/0"}).redis_url == secret
    monkeypatch.delenv("MAILSDK_REDIS_URL")
    assert settings_from({**BASE, "broker_url": "redis://b/0"}).redis_url == "redis://b/0"


def test_one_rate_may_be_given_without_a_list() -> None:
    settings = settings_from(
        {**BASE, "mailsdk_redis_url": "redis://h/0", "mailsdk_message_rates": Rate(10)}
    )
    assert settings.message_rates == (Rate(10),)
    assert settings_from({**BASE, "mailsdk_ledger": True, "broker_url": "redis://h/0"}).ledger == (
        "default"
    )


def test_published_task_messages_describe_their_arguments_without_showing_them() -> None:
    """Celery puts argsrepr/kwargsrepr into every task message (shown by ``celery events``,
    Flower and worker logs): they must not carry the message content or its addresses."""
    import celery
    import celery.signals

    from mailsdk import Outgoing
    from mailsdk.integrations._wire import encode_item
    from mailsdk.integrations.celery import install

    app = celery.Celery("quiet", broker="memory://", set_as_current=False)
    tasks = install(app, prefix="quiet")
    seen: list[dict[str, object]] = []

    def record(headers: dict[str, object] | None = None, **_: object) -> None:
        seen.append(dict(headers or {}))

    celery.signals.before_task_publish.connect(record, weak=False)
    try:
        payload = encode_item(
            Outgoing(
                b"Subject: secret plans\r\n\r\nthe body\r\n",
                sender="ceo@corp.test",
                recipients=("board@corp.test",),
                key="k1",
            )
        )
        tasks.send_chunk.apply_async(kwargs={"items": [payload, payload]})
        tasks.send_message.apply_async(kwargs={"item": payload})
    finally:
        celery.signals.before_task_publish.disconnect(record)
    assert len(seen) == 2
    shown = " ".join(f"{h.get('argsrepr')} {h.get('kwargsrepr')}" for h in seen)
    assert "<2 messages>" in shown and "<1 message>" in shown
    for secret in ("corp.test", str(payload["data"])[:40], "secret plans"):
        assert secret not in shown
