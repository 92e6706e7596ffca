"""``deliver_many`` (and the express lane, ``flows/express.py``) against a server that vanishes
at every byte offset of a pipelined run.

A tiny model server answers a 3-message pipelined run correctly, but stops (EOF) once it has
sent ``cut`` bytes, or once it has read ``cut`` bytes of the client's output. For every cut
point each message's status is fixed by what the client could know (issue 10's promise):
ACCEPTED only when its whole end-of-data reply arrived; UNKNOWN when its end-of-data was
written and the reply never came whole; FAILED when its end-of-data was never written.
"""

from __future__ import annotations

import pytest

from mailsdk.errors import ConnectionLost, MailError
from mailsdk.esmtp import parse_ehlo
from mailsdk.flows import (
    BdatChunk,
    BodyChunk,
    Close,
    Delivery,
    DeliveryStatus,
    Exchange,
    Pull,
    Report,
    SendOutcome,
    TransactionOptions,
    deliver_many,
    prepare_raw,
)
from mailsdk.flows.express import ExpressRun
from mailsdk.protocol.commands import Ehlo, EndOfData
from mailsdk.protocol.connection import ClientConnection
from mailsdk.protocol.events import NEED_DATA, CommandReplied, ConnectionClosed
from mailsdk.protocol.reply import Reply

A, F, U = DeliveryStatus.ACCEPTED, DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN
COUNT = 3


class ModelServer:
    """Answers MAIL/RCPT/DATA/RSET and message content correctly, within its byte budgets."""

    def __init__(self, *, send_budget: int | None = None, read_budget: int | None = None) -> None:
        self.send_budget = send_budget
        self.read_budget = read_budget
        self.inbox = bytearray()  # what it has read
        self.pending = bytearray()  # read, not yet parsed
        self.sent = bytearray()  # every byte it means to send (budget applied when handed out)
        self.handed = 0
        self.in_data = False
        self.queued = 0
        self.final_ends: list[int] = []  # offsets in ``sent`` where each 250 queued ends
        self.data_ok_ends: list[int] = []  # offsets where each 354 ends

    def read(self, data: bytes) -> None:
        if self.read_budget is not None:
            data = data[: max(0, self.read_budget - len(self.inbox))]
        self.inbox += data
        self.pending += data
        while True:
            if self.in_data:
                end = self.pending.find(b"\r\n.\r\n")
                if end < 0:
                    return
                del self.pending[: end + 5]
                self.in_data = False
                self.sent += b"250 2.0.0 queued as Q%d\r\n" % self.queued
                self.queued += 1
                self.final_ends.append(len(self.sent))
                continue
            end = self.pending.find(b"\r\n")
            if end < 0:
                return
            line = bytes(self.pending[:end])
            del self.pending[: end + 2]
            if line == b"DATA":
                self.sent += b"354 go ahead\r\n"
                self.data_ok_ends.append(len(self.sent))
                self.in_data = True
                self.pending[:0] = b"\r\n"  # an empty body's ".\r\n" ends at once
            else:
                self.sent += b"250 ok\r\n"

    def output(self) -> bytes:
        """The next bytes to deliver; ``b""`` is EOF (the budget is spent and nothing new)."""
        limit = (
            len(self.sent) if self.send_budget is None else min(len(self.sent), self.send_budget)
        )
        out = bytes(self.sent[self.handed : limit])
        self.handed = limit
        return out

    @property
    def exhausted(self) -> bool:
        spent_send = self.send_budget is not None and self.handed >= self.send_budget
        spent_read = self.read_budget is not None and len(self.inbox) >= self.read_budget
        return spent_send or spent_read


def run_against(server: ModelServer) -> list[SendOutcome]:
    conn = ClientConnection()
    conn.receive_data(b"220 mx\r\n")
    conn.next_event()
    conn.send(Ehlo("client.test"))
    conn.receive_data(b"250-mx\r\n250 PIPELINING\r\n")
    conn.next_event()
    caps = parse_ehlo(Reply.build(250, "mx", "PIPELINING"))
    flow = deliver_many(caps)
    items = iter(
        Delivery(
            index=i,
            prepared=prepare_raw(
                "s@x.test", [f"r{i}@y.test"], b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i)
            ),
        )
        for i in range(COUNT)
    )
    out = bytearray()
    reported: list[SendOutcome] = []
    result: object = None
    failure: MailError | None = None
    broken = False
    while True:
        try:
            action = flow.send(result) if failure is None else flow.throw(failure)
        except StopIteration:
            break
        result, failure = None, None
        if isinstance(action, Pull):
            result = next(items, None)
            continue
        if isinstance(action, Report):
            assert isinstance(action.value, SendOutcome)
            reported.append(action.value)
            continue
        if isinstance(action, Close):
            broken = True
            continue
        assert isinstance(action, Exchange)
        if broken:
            failure = ConnectionLost("closed")
            continue
        for frame in action.frames:
            if isinstance(frame, BodyChunk):
                out += conn.send_body(frame.data)
            elif isinstance(frame, BdatChunk):
                out += conn.send_bdat(frame.data, last=frame.last)
            elif isinstance(frame, EndOfData):
                out += conn.end_body()
            else:
                out += conn.send(frame)
        if action.replies == 0:
            result = ()
            continue
        server.read(bytes(out))
        out.clear()
        want = action.replies
        events: list[CommandReplied] = []
        try:
            while want > 0:
                event = conn.next_event()
                if event is NEED_DATA:
                    data = server.output()
                    if not data and server.exhausted:
                        data = b""
                    elif not data:
                        raise AssertionError("the client waits for a reply the server owes none")
                    conn.receive_data(data)
                    continue
                if isinstance(event, ConnectionClosed):
                    conn.send_failed()
                    raise ConnectionLost("the server closed the connection")
                assert isinstance(event, CommandReplied), event
                events.append(event)
                if event.final:
                    want -= 1
        except MailError as exc:
            conn.send_failed()
            broken = True
            failure = exc
            continue
        result = tuple(events)
    return reported


def express_against(server: ModelServer) -> list[SendOutcome]:
    """The same run on the express lane, driven as ``client/_async_express.py`` drives it."""
    conn = ClientConnection()
    conn.receive_data(b"220 mx\r\n")
    conn.next_event()
    conn.send(Ehlo("client.test"))
    conn.receive_data(b"250-mx\r\n250 PIPELINING\r\n")
    conn.next_event()
    caps = parse_ehlo(Reply.build(250, "mx", "PIPELINING"))
    lane = ExpressRun(conn.lend_parser(), caps, TransactionOptions())
    items = iter(
        Delivery(
            index=i,
            prepared=prepare_raw(
                "s@x.test", [f"r{i}@y.test"], b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i)
            ),
        )
        for i in range(COUNT)
    )
    reported: list[SendOutcome] = []
    while not lane.finished or lane.ready:
        try:
            if lane.want:
                lane.offer(next(items, None))
            elif (block := lane.take_output()) is not None:
                assert lane.broken is None, "a write after the connection was given up"
                server.read(block)
            elif lane.ready:
                reported += lane.take_ready()
            else:
                data = server.output()
                if not data and not server.exhausted:
                    raise AssertionError("the client waits for a reply the server owes none")
                lane.receive(data)
        except MailError as exc:
            assert lane.broken is None
            lane.lost(exc)
    return reported


RUNS = {"general": run_against, "express": express_against}


def full_run() -> ModelServer:
    server = ModelServer()
    assert [o.status for o in run_against(server)] == [A] * COUNT
    return server


FULL = full_run()


@pytest.mark.parametrize("schedule", sorted(RUNS))
@pytest.mark.parametrize("cut", range(len(FULL.sent) + 1))
def test_replies_cut_at_every_byte(cut: int, schedule: str) -> None:
    server = ModelServer(send_budget=cut)
    out = RUNS[schedule](server)
    assert [o.index for o in out] == list(range(COUNT))
    for i, outcome in enumerate(out):
        if cut >= FULL.final_ends[i]:
            expected = A  # its whole final reply arrived
        elif cut >= FULL.data_ok_ends[i]:
            expected = U  # the 354 arrived, so its body and end-of-data were written
        else:
            expected = F
        assert outcome.status is expected, (cut, i, [o.status for o in out])


@pytest.mark.parametrize("schedule", sorted(RUNS))
@pytest.mark.parametrize("cut", range(len(FULL.inbox) + 1))
def test_server_stops_reading_at_every_byte(cut: int, schedule: str) -> None:
    server = ModelServer(read_budget=cut)
    out = RUNS[schedule](server)
    assert [o.index for o in out] == list(range(COUNT))
    assert server.queued <= COUNT
    for i, outcome in enumerate(out):
        if i < server.queued:
            assert outcome.status is A, (cut, i)
        elif i < len(server.data_ok_ends):
            assert outcome.status is U, (cut, i)  # written after its 354, no reply
        else:
            assert outcome.status is F, (cut, i)
