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
    Close,
    Flow,
    ObtainToken,
    Phase,
    SendBdat,
    SendBody,
    StartTls,
    Submit,
    TlsInfo,
)
from mailsdk.flows.authenticate import AuthRequest, authenticate
from mailsdk.flows.envelope import Envelope, PreparedMessage, prepare_message, prepare_raw
from mailsdk.flows.handshake import TlsMode, greet, hello, negotiate_tls
from mailsdk.flows.outcomes import DeliveryStatus, Outgoing, SendOutcome
from mailsdk.flows.results import SendResult
from mailsdk.flows.session import OpenedSession, SessionPlan, open_session
from mailsdk.flows.simple import checked, quit_session, raw
from mailsdk.flows.transaction import TransactionOptions, reset, transaction

__all__ = [
    "Action",
    "AuthRequest",
    "AwaitGreeting",
    "Close",
    "DeliveryStatus",
    "Envelope",
    "Flow",
    "ObtainToken",
    "OpenedSession",
    "Outgoing",
    "Phase",
    "PreparedMessage",
    "SendBdat",
    "SendBody",
    "SendOutcome",
    "SendResult",
    "SessionPlan",
    "StartTls",
    "Submit",
    "TlsInfo",
    "TlsMode",
    "TransactionOptions",
    "authenticate",
    "checked",
    "greet",
    "hello",
    "negotiate_tls",
    "open_session",
    "prepare_message",
    "prepare_raw",
    "quit_session",
    "raw",
    "reset",
    "transaction",
]
