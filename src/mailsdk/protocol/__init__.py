"""mailsdk.protocol: the sans-IO SMTP/ESMTP/LMTP core, for people who bring their own I/O.

Layer: L1. Imports L0 (``mailsdk.errors``) and attrs only; never socket, ssl, asyncio,
selectors, threading, time, logging, opentelemetry or msal. Bytes in, typed events out, bytes
to send out: see :class:`ClientConnection` for the theory of operation.
"""

from __future__ import annotations

from mailsdk.protocol.address import (
    check_text,
    needs_smtputf8,
    quote_path,
    split_mailbox,
    validate_address,
)
from mailsdk.protocol.body import (
    BdatEncoder,
    DataEncoder,
    bdat_frames,
    canonicalize_line_endings,
    decode_data,
    encode_data,
    scan_content,
)
from mailsdk.protocol.commands import (
    Auth,
    AuthResponse,
    Bdat,
    Command,
    Data,
    Ehlo,
    EndOfData,
    Expn,
    Helo,
    Help,
    Lhlo,
    MailFrom,
    Noop,
    Quit,
    Raw,
    RcptTo,
    Rset,
    StartTls,
    Vrfy,
)
from mailsdk.protocol.connection import DEFAULT_LIMITS, ClientConnection
from mailsdk.protocol.dialect import Dialect
from mailsdk.protocol.events import (
    NEED_DATA,
    CommandReplied,
    ConnectionClosed,
    Event,
    GreetingReceived,
    NeedData,
)
from mailsdk.protocol.reply import EnhancedStatus, Reply, ReplyClass
from mailsdk.protocol.reply_parser import ReplyLimits, ReplyParser
from mailsdk.protocol.retry import ReplyVerdict, RetryAdvice, classify_reply
from mailsdk.protocol.state import ClientState, Outcome, Trigger

__all__ = [
    "Auth",
    "AuthResponse",
    "Bdat",
    "BdatEncoder",
    "ClientConnection",
    "ClientState",
    "Command",
    "CommandReplied",
    "ConnectionClosed",
    "DEFAULT_LIMITS",
    "Data",
    "DataEncoder",
    "Dialect",
    "Ehlo",
    "EndOfData",
    "EnhancedStatus",
    "Event",
    "Expn",
    "GreetingReceived",
    "Helo",
    "Help",
    "Lhlo",
    "MailFrom",
    "NEED_DATA",
    "NeedData",
    "Noop",
    "Outcome",
    "Quit",
    "Raw",
    "RcptTo",
    "Reply",
    "ReplyClass",
    "ReplyLimits",
    "ReplyParser",
    "ReplyVerdict",
    "RetryAdvice",
    "Rset",
    "StartTls",
    "Trigger",
    "Vrfy",
    "bdat_frames",
    "canonicalize_line_endings",
    "check_text",
    "classify_reply",
    "decode_data",
    "encode_data",
    "needs_smtputf8",
    "quote_path",
    "scan_content",
    "split_mailbox",
    "validate_address",
]
