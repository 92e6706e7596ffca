"""The Celery app the real workers of the integration tests run (``celery -A`` this module).

Configured from ``MAILSDK_TEST_*`` environment variables set by the test that starts the
workers: the Redis URL (broker, results, limits, ledger), the SMTP server (the real Postfix,
through the counting relay) and the limits under test.
"""

from __future__ import annotations

import os
import typing

from celery import Celery

from mailsdk import Client, ClientBuilder
from mailsdk.integrations.celery import install
from mailsdk.integrations.redis import Rate
from mailsdk.transport import TlsSettings

_env = os.environ.get
_url = _env("MAILSDK_TEST_REDIS_URL", "redis://127.0.0.1:1/0")

app = Celery("mailsdk_test", broker=_url, backend=_url)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_transport_options={"visibility_timeout": 30},
    broker_connection_retry_on_startup=True,
    result_expires=600,
    result_backend_always_retry=True,
    result_backend_max_retries=20,
    worker_hijack_root_logger=False,
    mailsdk_client="tests.integrations.celery_app:build_client",
    mailsdk_ledger="itest",
    mailsdk_claim_ttl=float(_env("MAILSDK_TEST_CLAIM_TTL", "30")),
    mailsdk_lease_ttl=float(_env("MAILSDK_TEST_LEASE_TTL", "5")),
    mailsdk_idle_timeout=float(_env("MAILSDK_TEST_IDLE", "2")),
    mailsdk_retry={
        "attempts": int(_env("MAILSDK_TEST_RETRY_ATTEMPTS", "8")),
        "backoff": float(_env("MAILSDK_TEST_RETRY_BACKOFF", "0.5")),
        "max_delay": 4.0,
    },
)
if _env("MAILSDK_TEST_RATE"):
    app.conf.mailsdk_message_rates = [
        Rate.per_second(
            float(_env("MAILSDK_TEST_RATE", "0")), burst=float(_env("MAILSDK_TEST_BURST", "10"))
        )
    ]
if _env("MAILSDK_TEST_MAX_CONN"):
    app.conf.mailsdk_max_connections = int(_env("MAILSDK_TEST_MAX_CONN", "0"))

tasks = install(app)

if _env("MAILSDK_TEST_SPAN_FILE"):
    # Real OpenTelemetry SDK in the worker: every finished span is appended to a JSON-lines
    # file, so the test can check that producer and worker spans share one trace.
    import json

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    def _line(span: typing.Any) -> str:
        ctx, parent = span.get_span_context(), span.parent
        return (
            json.dumps(
                {
                    "name": span.name,
                    "trace_id": f"{ctx.trace_id:032x}",
                    "span_id": f"{ctx.span_id:016x}",
                    "parent_id": f"{parent.span_id:016x}" if parent else None,
                }
            )
            + "\n"
        )

    _provider = TracerProvider()
    _provider.add_span_processor(
        SimpleSpanProcessor(
            ConsoleSpanExporter(
                out=open(_env("MAILSDK_TEST_SPAN_FILE", ""), "a", encoding="utf-8"),  # noqa: SIM115
                formatter=_line,
            )
        )
    )
    trace.set_tracer_provider(_provider)


def build_client() -> Client:
    """The worker's client: plain SMTP to the test server (no credentials needed there)."""
    if _env("MAILSDK_TEST_BROKEN_CLIENT"):
        # A deployment whose worker lacks its secret: the factory fails before any send.
        return ClientBuilder.smtp("127.0.0.1", int(os.environ["MAILSDK_TEST_NO_SUCH_SETTING"]))
    host = _env("MAILSDK_TEST_SMTP_HOST", "127.0.0.1")
    port = int(_env("MAILSDK_TEST_SMTP_PORT", "25"))
    builder = ClientBuilder.smtp(host, port).with_tls("none").with_timeouts(30)
    if _env("MAILSDK_TEST_SMTP_USER"):
        # STARTTLS + AUTH against Postfix; the password comes from the worker's environment,
        # the way a deployment would keep it (never from a task).
        builder = builder.with_tls(
            "starttls", settings=TlsSettings(ca_file=_env("MAILSDK_TEST_CA_FILE"))
        ).with_credentials(
            _env("MAILSDK_TEST_SMTP_USER", ""), _env("MAILSDK_TEST_SMTP_PASSWORD", "")
        )
    if _env("MAILSDK_TEST_SPAN_FILE"):
        builder = builder.with_opentelemetry()
    return builder.build()
