"""The Redis limiters have the batch engine's limiter protocols' shape: same method names,
parameters and async-ness (``mypy --strict`` checks the same statically: the worker passes
them to the pool typed as the protocols)."""

from __future__ import annotations

import inspect

import pytest

pytest.importorskip("redis", reason="the redis extra is not installed")

from mailsdk.batch import limits
from mailsdk.integrations import redis as ours
from mailsdk.integrations._leases import LeaseKeeper

PAIRS = [
    ("RateLimiter", ours.RedisRateLimiter),
    ("AsyncRateLimiter", ours.AsyncRedisRateLimiter),
    ("ConnectionLimiter", ours.RedisConnectionLimiter),
    ("AsyncConnectionLimiter", ours.AsyncRedisConnectionLimiter),
    ("ConnectionLimiter", LeaseKeeper),
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
