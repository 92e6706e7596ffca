"""Observability for mailsdk: the instrumentation seam, a no-op default and OpenTelemetry.

Layer: L3 (telemetry). May import ``mailsdk.protocol.reply`` (read-only models), L0 and
``opentelemetry`` (the API package only); must never import ``mailsdk.transport``, ``flows``,
``auth``, ``client`` or ``msal``. Only the client drivers call into this package; the protocol
core and the flows never do (docs/architecture.md, "Decisions").

Names, attribute keys and the redaction rules live in :mod:`mailsdk.telemetry.attributes`;
docs/telemetry.md describes what is recorded and how to pass providers.
"""

from __future__ import annotations

from mailsdk.telemetry.base import (
    CommandObserver,
    Instrumentation,
    NoopInstrumentation,
    SessionObserver,
    TransactionObserver,
)
from mailsdk.telemetry.otel import OpenTelemetryInstrumentation

__all__ = [
    "CommandObserver",
    "Instrumentation",
    "NoopInstrumentation",
    "OpenTelemetryInstrumentation",
    "SessionObserver",
    "TransactionObserver",
]
