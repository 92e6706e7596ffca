"""DKIM signing (RFC 6376 RSA-SHA256, RFC 8463 Ed25519-SHA256) for outgoing messages.

Layer: L2 (pure, beside ``mailsdk.esmtp``). May import ``mailsdk.protocol`` and L0; must never
import socket, ssl, asyncio, selectors, threading, time, logging, opentelemetry or msal.
Signing uses dkimpy (``pip install 'mailsdk[dkim]'``) and cryptography, and never needs DNS.

Most users only call :meth:`mailsdk.ClientBuilder.with_dkim`; the client then signs every
message as the last preparation step. The pieces are public for users who sign elsewhere::

    from mailsdk.dkim import DkimKey, DkimSigner, sign_bytes

    signer = DkimSigner(domain="example.com", selector="s1", key=DkimKey.from_file("s1.pem"))
    signed = sign_bytes([signer], raw_message, timestamp=int(time.time()))
"""

from __future__ import annotations

from mailsdk.dkim.canonical import BodyHasher, Canonicalization, HeaderSplitter, split_message
from mailsdk.dkim.keys import DkimAlgorithm, DkimKey
from mailsdk.dkim.signer import DEFAULT_HEADERS, DkimSigner, sign_bytes, sign_message

__all__ = [
    "BodyHasher",
    "Canonicalization",
    "DEFAULT_HEADERS",
    "DkimAlgorithm",
    "DkimKey",
    "DkimSigner",
    "HeaderSplitter",
    "sign_bytes",
    "sign_message",
    "split_message",
]
