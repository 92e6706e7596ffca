"""Reply deadlines start once the bytes are written: a slow but allowed body write does not eat the end-of-data reply's time."""

from __future__ import annotations

import typing

from tests._support.scripted_server import (
    Expect,
    Send,
    ehlo_reply,
)

import mailsdk
from mailsdk import (
    Timeouts,
)


def hello(*keywords: str) -> list[typing.Any]:
    return [Send(b"220 mx.test ESMTP\r\n"), Expect(b"EHLO"), Send(ehlo_reply(*keywords))]


class _SlowLinkStream:
    """A blocking Stream on a fake clock: writing costs ``len / rate`` seconds, replies are
    instant (scripted)."""

    def __init__(self, clock: list[float], rate: float, replies: list[bytes]) -> None:
        from mailsdk.transport import StreamInfo

        self.clock = clock
        self.rate = rate
        self.replies = replies
        self.info = StreamInfo(peer_address=None, local_address=None, transport="tcp")
        self.is_tls = False

    def send_all(self, data: bytes, timeout: float | None, *, stall: float | None = None) -> None:
        cost = len(data) / self.rate
        assert timeout is None or cost < timeout, "the write itself is within its deadline"
        self.clock[0] += cost

    def receive(self, max_bytes: int, timeout: float | None) -> bytes:
        return self.replies.pop(0)

    def channel_binding(self, kind: str) -> bytes | None:
        return None

    def close(self) -> None:
        pass


def test_data_reply_deadline_is_not_eaten_by_a_slow_but_allowed_body_write() -> None:
    from mailsdk.client._pump import Pump
    from mailsdk.client._sync_driver import SyncDriver
    from mailsdk.flows import greet, hello, prepare_raw, transaction
    from mailsdk.protocol.connection import ClientConnection
    from mailsdk.telemetry import NoopInstrumentation

    clock = [0.0]
    timeouts = Timeouts()  # command 300 s, data 600 s, data_rate 10 KiB/s
    body = (b"x" * 998 + b"\r\n") * 4000  # 4 MB: the write may take 300 + 390 s
    stream = _SlowLinkStream(
        clock,
        rate=6000.0,  # about 667 s for the body: slower than 600 s, within the write deadline
        replies=[
            b"220 mx\r\n",
            b"250 mx\r\n",
            b"250 ok\r\n",
            b"250 ok\r\n",
            b"354 go\r\n",
            b"250 2.0.0 queued\r\n",
        ],
    )
    observer = NoopInstrumentation().session(
        server_address="mx", server_port=25, transport="tcp", protocol="smtp"
    )
    pump = Pump(ClientConnection(), observer, timeouts, clock=lambda: clock[0])
    driver = SyncDriver(
        typing.cast("mailsdk.transport.Stream", stream),
        pump,
        tls_context=None,
        server_hostname=None,
        token_provider=None,
    )

    def flow() -> typing.Generator[typing.Any, object, mailsdk.SendResult]:
        yield from greet()
        caps = yield from hello("client.test")
        return (yield from transaction(prepare_raw("a@example.org", ["b@example.com"], body), caps))

    result = driver.run(flow())
    assert result.reply.code == 250
