# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# (redis ships no type information: its objects are Unknown to a strict checker.)
"""Redis connection helpers shared by the limits and the ledger: script calls, typed errors.

Layer: L7 (integrations.redis). Imports ``redis`` (the extra) and L0.

Every Redis failure (refused, timed out, restarted mid-call, a script error) surfaces as
:class:`CoordinationUnavailable`: a clear, typed error naming the server's host and port, never
the URL's password.
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Sequence

import redis
import redis.asyncio
import redis.exceptions

from mailsdk.errors import ConfigurationError
from mailsdk.integrations._errors import CoordinationUnavailable

__all__ = ["CoordinationUnavailable", "Script", "describe", "from_url", "run"]


def describe(client: redis.Redis | redis.asyncio.Redis) -> str:
    """``host:port/db`` of ``client``'s server (never its password)."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


def from_url(url: str, *, timeout: float = 5.0) -> redis.Redis:
    """A Redis client for ``url`` with bounded connect and command timeouts (never hangs).

    Raises:
        ConfigurationError: ``url`` is not a Redis URL (the message never repeats the URL,
            which may hold a password).
    """
    try:
        return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    except (ValueError, TypeError):
        raise ConfigurationError(
            "not a valid Redis URL (redis://[:password@]host[:port][/db], rediss://..., unix://...)"
        ) from None


def _unavailable(client: redis.Redis | redis.asyncio.Redis, exc: Exception) -> Exception:
    return CoordinationUnavailable(f"Redis at {describe(client)} failed: {type(exc).__name__}")


class Script:
    """One Lua script, called with EVALSHA (loaded again on NOSCRIPT, e.g. after a restart)."""

    def __init__(self, source: str) -> None:
        self._source = source

    def __call__(
        self, client: redis.Redis, keys: Sequence[str], args: Sequence[str | bytes | int | float]
    ) -> typing.Any:
        """Run the script on ``client``.

        Raises:
            CoordinationUnavailable: any Redis or connection failure.
        """
        script = client.register_script(self._source)
        try:
            return script(keys=list(keys), args=list(args))
        except (redis.exceptions.RedisError, OSError) as exc:
            raise _unavailable(client, exc) from exc

    async def acall(
        self,
        client: redis.asyncio.Redis,
        keys: Sequence[str],
        args: Sequence[str | bytes | int | float],
    ) -> typing.Any:
        """Run the script on an asyncio ``client`` (same errors as calling it)."""
        script = client.register_script(self._source)
        try:
            result = script(keys=list(keys), args=list(args))
            return await typing.cast(Awaitable[typing.Any], result)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise _unavailable(client, exc) from exc


def run(client: redis.Redis, call: typing.Callable[[], typing.Any]) -> typing.Any:
    """Run a plain Redis command, mapping failures to :class:`CoordinationUnavailable`."""
    try:
        return call()
    except (redis.exceptions.RedisError, OSError) as exc:
        raise _unavailable(client, exc) from exc
