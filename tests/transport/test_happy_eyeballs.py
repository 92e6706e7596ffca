"""Happy Eyeballs (RFC 8305) in both TCP connectors, on loopback only (127.0.0.1 and ::1).

A "blackhole" is a listening socket whose accept queue is full: the kernel drops new SYNs, so
a connect to it neither succeeds nor fails until the deadline. A custom resolver puts such an
address before a good one; a sequential dialer would then time out, Happy Eyeballs connects.
"""

from __future__ import annotations

import socket
import threading
import typing
from collections.abc import Callable, Iterator

import pytest

from mailsdk.errors import ConnectError, ConnectTimeout, InvalidInputError
from mailsdk.transport import AddrInfo, AsyncTcpConnector, TcpConnector
from mailsdk.transport._addresses import interleave

from .conftest import LoopbackServer, echo

T = 3.0  # the connect deadline: a sequential dialer stuck on a blackhole would exceed it

Dial = Callable[..., typing.Awaitable[typing.Any]]


def info(host: str, port: int) -> AddrInfo:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockaddr: tuple[typing.Any, ...] = (host, port, 0, 0) if ":" in host else (host, port)
    return (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)


def table(*entries: AddrInfo) -> Callable[[str, int], list[AddrInfo]]:
    """A resolver that answers every name with ``entries`` and records the lookups."""

    def resolve(host: str, port: int) -> list[AddrInfo]:
        resolve.calls.append((host, port))  # type: ignore[attr-defined]
        return list(entries)

    resolve.calls = []  # type: ignore[attr-defined]
    return resolve


@pytest.fixture(params=["sync", "async"])
def dial(request: pytest.FixtureRequest) -> Dial:
    """Connect with TcpConnector or AsyncTcpConnector; returns the stream's peer address."""

    async def run(host: str, port: int, timeout: float = T, **kwargs: typing.Any) -> typing.Any:
        if request.param == "sync":
            with TcpConnector(host, port, **kwargs).connect(timeout) as stream:
                return stream.info.peer_address
        async with await AsyncTcpConnector(host, port, **kwargs).connect(timeout) as stream:
            return stream.info.peer_address

    return run


def _blackhole(family: socket.AddressFamily) -> Iterator[int]:
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    listener = socket.socket(family)
    listener.bind((host, 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers: list[socket.socket] = []
    try:
        for _ in range(16):
            sock = socket.socket(family)
            sock.settimeout(0.2)
            try:
                sock.connect((host, port))
            except TimeoutError:
                sock.close()
                break
            fillers.append(sock)
        else:
            pytest.skip("the OS accepts connections beyond the listen backlog")
        yield port
    finally:
        for sock in fillers:
            sock.close()
        listener.close()


@pytest.fixture
def blackhole_v4() -> Iterator[int]:
    yield from _blackhole(socket.AF_INET)


@pytest.fixture
def blackhole_v6(has_ipv6: bool) -> Iterator[int]:
    if not has_ipv6:
        pytest.skip("no IPv6 loopback")
    yield from _blackhole(socket.AF_INET6)


@pytest.fixture
def server_v4(make_server: Callable[..., LoopbackServer]) -> LoopbackServer:
    return make_server(echo)


@pytest.fixture
def server_v6(make_server: Callable[..., LoopbackServer], has_ipv6: bool) -> LoopbackServer:
    if not has_ipv6:
        pytest.skip("no IPv6 loopback")
    return make_server(echo, family=socket.AF_INET6)


# --- ordering (pure) ------------------------------------------------------------------------


def test_interleave_alternates_families_starting_with_the_first_answer():
    answers = [info("::1", 1), info("::1", 2), info("::1", 3), info("127.0.0.1", 4)]
    assert [a[4][1] for a in interleave(answers)] == [1, 4, 2, 3]
    answers = [info("127.0.0.1", 4), info("127.0.0.1", 5), info("::1", 1)]
    assert [a[4][1] for a in interleave(answers)] == [4, 1, 5]


def test_interleave_drops_duplicates_and_datagram_entries():
    udp = (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", 4))
    assert interleave([info("127.0.0.1", 4), udp, info("127.0.0.1", 4)]) == [info("127.0.0.1", 4)]


# --- racing ---------------------------------------------------------------------------------


async def test_a_blackholed_v4_address_does_not_delay_the_good_v6_one(
    dial: Dial, blackhole_v4: int, server_v6: LoopbackServer
):
    resolver = table(info("127.0.0.1", blackhole_v4), info("::1", server_v6.port))
    peer = await dial("mail.test", 25, resolver=resolver)
    assert peer[:2] == ("::1", server_v6.port)
    assert resolver.calls == [("mail.test", 25)]  # type: ignore[attr-defined]


async def test_a_blackholed_v6_address_does_not_delay_the_good_v4_one(
    dial: Dial, blackhole_v6: int, server_v4: LoopbackServer
):
    resolver = table(info("::1", blackhole_v6), info("127.0.0.1", server_v4.port))
    peer = await dial("mail.test", 25, resolver=resolver)
    assert peer == ("127.0.0.1", server_v4.port)


async def test_a_refused_address_moves_on_at_once_even_with_a_long_attempt_delay(
    dial: Dial, closed_port: int, server_v6: LoopbackServer
):
    # With a 60 s delay only "failure starts the next attempt" (RFC 8305 §5) can connect in T.
    resolver = table(info("127.0.0.1", closed_port), info("::1", server_v6.port))
    peer = await dial("mail.test", 25, resolver=resolver, attempt_delay=60.0)
    assert peer[:2] == ("::1", server_v6.port)


async def test_the_losing_connection_is_closed(dial: Dial, make_server, has_ipv6: bool):
    if not has_ipv6:
        pytest.skip("no IPv6 loopback")
    saw: list[bytes] = []
    closed = threading.Event()

    def record_eof(conn: socket.socket, server: LoopbackServer) -> None:
        saw.append(conn.recv(10))
        closed.set()

    first = make_server(record_eof)
    second = make_server(record_eof, family=socket.AF_INET6)
    # attempt_delay=0: both attempts start together and (on loopback) both connect.
    resolver = table(info("127.0.0.1", first.port), info("::1", second.port))
    peer = await dial("mail.test", 25, resolver=resolver, attempt_delay=0.0)
    assert peer[1] in (first.port, second.port)
    # The winner was closed by the ``with`` in ``dial``; both servers must see EOF (no leak).
    assert first.handled.wait(T) and second.handled.wait(T)
    assert saw == [b"", b""]


async def test_every_address_tried_is_named_when_all_fail(
    dial: Dial, closed_port: int, has_ipv6: bool
):
    if not has_ipv6:
        pytest.skip("no IPv6 loopback")
    resolver = table(info("::1", closed_port), info("127.0.0.1", closed_port))
    with pytest.raises(ConnectError) as caught:
        await dial("mail.test", closed_port, resolver=resolver)
    assert not isinstance(caught.value, ConnectTimeout)
    assert [a for a, _ in caught.value.attempts] == [
        f"[::1]:{closed_port}",
        f"127.0.0.1:{closed_port}",
    ]
    assert all("refused" in reason.lower() for _, reason in caught.value.attempts)
    assert f"[::1]:{closed_port}" in str(caught.value)
    assert f"127.0.0.1:{closed_port}" in str(caught.value)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


async def test_the_deadline_covers_every_attempt_and_names_them(
    dial: Dial, blackhole_v4: int, blackhole_v6: int
):
    resolver = table(info("::1", blackhole_v6), info("127.0.0.1", blackhole_v4))
    with pytest.raises(ConnectTimeout) as caught:
        await dial("mail.test", 25, timeout=0.6, resolver=resolver, attempt_delay=0.1)
    assert caught.value.phase == "connect"
    assert [a for a, _ in caught.value.attempts] == [
        f"[::1]:{blackhole_v6}",
        f"127.0.0.1:{blackhole_v4}",
    ]


# --- resolution inside the deadline ---------------------------------------------------------


async def test_a_hung_resolver_is_bounded_by_the_connect_deadline(dial: Dial):
    release = threading.Event()

    def hung(host: str, port: int) -> list[AddrInfo]:
        release.wait(30)
        return []

    try:
        with pytest.raises(ConnectTimeout) as caught:
            await dial("slow-dns.test", 25, timeout=0.3, resolver=hung)
        assert "resolving" in str(caught.value)
        assert caught.value.phase == "connect"
    finally:
        release.set()


async def test_an_unresolvable_name_is_a_connect_error(dial: Dial):
    def nxdomain(host: str, port: int) -> list[AddrInfo]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(ConnectError) as caught:
        await dial("nowhere.test", 25, resolver=nxdomain)
    assert "did not resolve" in str(caught.value)
    assert "nowhere.test:25" in str(caught.value)
    assert caught.value.attempts == ()


async def test_an_empty_answer_is_a_connect_error(dial: Dial):
    with pytest.raises(ConnectError, match="did not resolve"):
        await dial("empty.test", 25, resolver=table())


async def test_the_system_resolver_is_used_by_default(dial: Dial, server_v4: LoopbackServer):
    peer = await dial("localhost", server_v4.port)
    assert peer[1] == server_v4.port


def test_a_hung_lookup_does_not_hold_up_the_next_one(server_v4: LoopbackServer):
    release = threading.Event()

    def hung(host: str, port: int) -> list[AddrInfo]:
        release.wait(30)
        return [info("127.0.0.1", server_v4.port)]

    try:
        for _ in range(2):  # both hang in their own worker thread
            with pytest.raises(ConnectTimeout):
                TcpConnector("slow.test", 25, resolver=hung).connect(0.2)
        good = table(info("127.0.0.1", server_v4.port))
        with TcpConnector("fast.test", 25, resolver=good).connect(T) as stream:
            assert stream.info.peer_address == ("127.0.0.1", server_v4.port)
    finally:
        release.set()


async def test_a_source_address_of_the_other_family_is_named_as_such(
    dial: Dial, server_v6: LoopbackServer
):
    # bind() raises a gaierror (EAI_ADDRFAMILY, errno -9): the reason said "Unknown error -9".
    with pytest.raises(ConnectError) as caught:
        await dial("::1", server_v6.port, source_address=("127.0.0.1", 0))
    [(_, reason)] = caught.value.attempts
    assert "unknown error" not in reason.lower()
    assert "family" in reason.lower()


@pytest.mark.parametrize("answer", [("junk",), "127.0.0.1", (2, 1, 6, "", "127.0.0.1")])
async def test_a_resolver_answer_of_the_wrong_shape_is_a_clear_error(dial: Dial, answer):
    # interleave() raised a bare ValueError/IndexError from inside the dialer.
    with pytest.raises(InvalidInputError, match="getaddrinfo"):
        await dial("mail.test", 25, resolver=lambda host, port: [answer])


@pytest.mark.parametrize("count", [1, 2])
async def test_a_socket_the_os_cannot_create_is_named_with_its_reason(dial: Dial, count: int):
    # As for AF_INET6 on a host without IPv6 (EAFNOSUPPORT): the async dialer said "no answer
    # before the deadline", the blocking one with a single address named no attempt at all.
    entry = (socket.AF_UNIX, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("mail.test", 25))
    with pytest.raises(ConnectError) as caught:
        await dial("mail.test", 25, resolver=lambda host, port: [entry] * count)
    assert not isinstance(caught.value, ConnectTimeout)
    assert caught.value.attempts
    assert all(reason == "Protocol not supported" for _, reason in caught.value.attempts)
