"""The Redis limiters have the batch engine's limiter protocols' shape (active once
``mailsdk.batch.limits`` is on the branch): same method names, parameters and async-ness."""

from __future__ import annotations

import inspect

import pytest

pytest.importorskip("redis", reason="the redis extra is not installed")
limits = pytest.importorskip("mailsdk.batch.limits", reason="the batch engine is not merged yet")

from mailsdk.integrations import redis as ours  # noqa: E402

PAIRS = [
    ("RateLimiter", ours.RedisRateLimiter),
    ("AsyncRateLimiter", ours.AsyncRedisRateLimiter),
    ("ConnectionLimiter", ours.RedisConnectionLimiter),
    ("AsyncConnectionLimiter", ours.AsyncRedisConnectionLimiter),
]


@pytest.mark.parametrize(("protocol_name", "implementation"), PAIRS)
def test_same_shape_as_the_protocol(protocol_name: str, implementation: type) -> None:
    protocol = getattr(limits, protocol_name)
    methods = [
        n for n, v in vars(protocol).items() if inspect.isfunction(v) and not n.startswith("_")
    ]
    assert methods
    for name in methods:
        expected, got = getattr(protocol, name), getattr(implementation, name)
        assert inspect.iscoroutinefunction(expected) == inspect.iscoroutinefunction(got), name
        want = [(p.name, p.kind) for p in inspect.signature(expected).parameters.values()]
        have = [(p.name, p.kind) for p in inspect.signature(got).parameters.values()]
        assert want == have, (name, want, have)
