"""Sans-IO conversation flows: generators that yield I/O actions and return typed results.

Layer: L3 flows. May import ``mailsdk.protocol``, ``mailsdk.esmtp``, ``mailsdk.auth`` and L0; must
never import transport, telemetry, client or config, nor socket/ssl/asyncio/time/logging.

Use these to drive mailsdk with your own I/O (see docs/sans-io.md): run a flow, perform each
yielded :data:`Action`, send its result back.
"""

from __future__ import annotations

from mailsdk.flows.actions import (
    Action,
    AwaitGreeting,
    BdatChunk,
    BodyChunk,
    Close,
    Exchange,
    Flow,
    Frame,
    ObtainToken,
    Phase,
    Pull,
    Report,
    StartTls,
    TlsInfo,
)
from mailsdk.flows.authenticate import AuthRequest, authenticate
from mailsdk.flows.deliver import Delivery, deliver_many
from mailsdk.flows.envelope import (
    ContentStream,
    Envelope,
    PreparedMessage,
    prepare_message,
    prepare_raw,
)
from mailsdk.flows.handshake import TlsMode, greet, hello, negotiate_tls
from mailsdk.flows.judge import (
    EnvelopePlan,
    EnvelopeVerdict,
    judge_data,
    judge_envelope,
    judge_final,
    plan_envelope,
)
from mailsdk.flows.outcomes import DeliveryStatus, Outgoing, SendOutcome
from mailsdk.flows.results import SendResult
from mailsdk.flows.session import OpenedSession, SessionPlan, open_session
from mailsdk.flows.simple import checked, quit_session, raw
from mailsdk.flows.transaction import TransactionOptions, reset, transaction

__all__ = [
    "Action",
    "AuthRequest",
    "AwaitGreeting",
    "BdatChunk",
    "BodyChunk",
    "Close",
    "ContentStream",
    "Delivery",
    "DeliveryStatus",
    "Envelope",
    "EnvelopePlan",
    "EnvelopeVerdict",
    "Exchange",
    "Flow",
    "Frame",
    "ObtainToken",
    "OpenedSession",
    "Outgoing",
    "Phase",
    "PreparedMessage",
    "Pull",
    "Report",
    "SendOutcome",
    "SendResult",
    "SessionPlan",
    "StartTls",
    "TlsInfo",
    "TlsMode",
    "TransactionOptions",
    "authenticate",
    "checked",
    "deliver_many",
    "greet",
    "hello",
    "judge_data",
    "judge_envelope",
    "judge_final",
    "negotiate_tls",
    "open_session",
    "plan_envelope",
    "prepare_message",
    "prepare_raw",
    "quit_session",
    "raw",
    "reset",
    "transaction",
]
