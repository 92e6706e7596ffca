"""Review the ledger's parked UNKNOWN messages from a shell.

Layer: L7 (integrations.redis). The Redis URL comes from ``$MAILSDK_REDIS_URL`` (never a
command-line argument, where ``ps`` would show its password)::

    MAILSDK_REDIS_URL=redis://... python -m mailsdk.integrations.redis unknown --ledger newsletter
    python -m mailsdk.integrations.redis resolve --ledger newsletter --delivered '<id@example>'
    python -m mailsdk.integrations.redis resolve --ledger newsletter --not-delivered '<id@example>'

``unknown`` prints one JSON object per parked message (key, attempts, updated, reason, detail).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from mailsdk.errors import MailError
from mailsdk.integrations.redis._connection import from_url
from mailsdk.integrations.redis.ledger import DeliveryLedger

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 1 Redis failed or a key to resolve was
    not parked, 2 usage: bad arguments, a malformed URL or ledger name)."""
    parser = argparse.ArgumentParser(prog="python -m mailsdk.integrations.redis")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("unknown", help="list the messages parked as UNKNOWN")
    listing.add_argument("--ledger", default="default")
    listing.add_argument("--limit", type=int, default=1000)
    resolving = commands.add_parser("resolve", help="close the review of parked messages")
    resolving.add_argument("--ledger", default="default")
    verdict = resolving.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--delivered", action="store_true", help="it arrived: never resend")
    verdict.add_argument("--not-delivered", action="store_true", help="it did not: may resend")
    resolving.add_argument("keys", nargs="+")
    args = parser.parse_args(argv)
    url = os.environ.get("MAILSDK_REDIS_URL")
    if not url:
        parser.error("set MAILSDK_REDIS_URL to the ledger's Redis")
    try:
        client = from_url(url)
        ledger = DeliveryLedger(client, args.ledger)
    except MailError as exc:  # a malformed URL or ledger name
        print(f"error: {exc}", file=sys.stderr)
        return 2
    status = 0
    try:
        if args.command == "unknown":
            for entry in ledger.unknown(limit=args.limit):
                line = {
                    "key": entry.key,
                    "attempts": entry.attempts,
                    "updated": entry.updated,
                    "reason": entry.reason,
                    "detail": entry.detail,
                }
                print(json.dumps(line, sort_keys=True))
        else:
            for key in args.keys:
                if not ledger.resolve(key, delivered=bool(args.delivered)):
                    found = ledger.get(key)
                    shown = found.state.value if found is not None else "not in the ledger"
                    print(f"not parked as UNKNOWN ({shown}), left alone: {key}", file=sys.stderr)
                    status = 1
    except MailError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
