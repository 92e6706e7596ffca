"""ESMTP service extensions: EHLO parsing into typed Capabilities, and MAIL/RCPT parameters.

Layer: L2 (esmtp). May import ``mailsdk.protocol`` and L0 (``errors``, ``_types``, ``_secret``);
must never import ``mailsdk.auth``, L3 and above (flows, transport, telemetry, client...), I/O
modules of the standard library, ``opentelemetry`` or ``msal``.

Typical use (what the client layer does)::

    caps = parse_ehlo(ehlo_reply)                    # Capabilities
    caps.max_size, caps.auth_mechanisms, caps.pipelining
    mail = mail_parameters(MailOptions(size=n, body="8BITMIME"), caps)
    rcpt = rcpt_parameters(RcptOptions(notify=("FAILURE",)), caps)
"""

from __future__ import annotations

from mailsdk.esmtp.builtin import (
    AuthExtension,
    FlagExtension,
    SizeExtension,
    builtin_extensions,
    parse_auth_mechanisms,
    parse_size,
)
from mailsdk.esmtp.capabilities import Capabilities, parse_ehlo
from mailsdk.esmtp.params import (
    BodyType,
    MailOptions,
    NotifyType,
    RcptOptions,
    RetType,
    mail_parameters,
    orcpt_value,
    rcpt_parameters,
    validate_parameter,
)
from mailsdk.esmtp.registry import (
    DEFAULT_ENTRY_POINT_GROUP,
    Extension,
    ExtensionRegistry,
    MailParameterHook,
    RcptParameterHook,
    is_ehlo_keyword,
)
from mailsdk.esmtp.xtext import decode_xtext, encode_utf8_addr_xtext, encode_xtext, is_xtext

__all__ = [
    "DEFAULT_ENTRY_POINT_GROUP",
    "AuthExtension",
    "BodyType",
    "Capabilities",
    "Extension",
    "ExtensionRegistry",
    "FlagExtension",
    "MailOptions",
    "MailParameterHook",
    "NotifyType",
    "RcptOptions",
    "RcptParameterHook",
    "RetType",
    "SizeExtension",
    "builtin_extensions",
    "decode_xtext",
    "encode_utf8_addr_xtext",
    "encode_xtext",
    "is_ehlo_keyword",
    "is_xtext",
    "mail_parameters",
    "orcpt_value",
    "parse_auth_mechanisms",
    "parse_ehlo",
    "parse_size",
    "rcpt_parameters",
    "validate_parameter",
]
