"""Errors of the integrations that must be importable without any extra installed.

Layer: L7 (integrations, private). Imports L0 only.
"""

from __future__ import annotations

from mailsdk.errors import TransportError

__all__ = ["CoordinationUnavailable"]


class CoordinationUnavailable(TransportError):
    """Redis, which holds the shared limits or the ledger, could not be reached or failed.

    Nothing was sent because of the failed call: limiters and the ledger are consulted before a
    send, so a caller that gets this error can retry later or give up without losing track.
    """
