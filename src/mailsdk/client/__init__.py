"""Sync and async SMTP/LMTP clients built on the sans-IO flows.

Layer: L5 client. May import L0-L4; never batch, builder, api, compat or cli.
"""

from __future__ import annotations

from mailsdk.client.async_client import AsyncClient, AsyncLMTPClient, AsyncSession
from mailsdk.client.sync_client import Client, LMTPClient, Session

__all__ = ["AsyncClient", "AsyncLMTPClient", "AsyncSession", "Client", "LMTPClient", "Session"]
