"""The throughput matrix: every client on every case, runs interleaved, median of the runs.

A case is a link (loopback, or the 20 ms relay), a recipient count and a connection count.
Runs are interleaved (run 1 of every client, then run 2, ...) so that load from the shared
machine drifts over all clients alike. On loopback every client sends the same number of
messages; on the delayed link each gets enough for about ``budget`` seconds at its expected
number of round trips per message, because a lock-step client at 13 round trips per message
would otherwise take minutes for what a pipelining one does in seconds (rates are per message,
so the counts need not match).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.delivery.mailsdk_clients import has_pool, has_process_pool, has_send_many
from benchmarks.delivery.sampling import Sample, Series, run_smtp_source, run_worker
from benchmarks.delivery.servers import SmtpSink

LOOPBACK = "loopback"
RTT = "rtt20"

#: Clients on one connection, and on eight (threads, tasks, sessions or the pool).
BASE_CLIENTS = (
    "smtplib",
    "aiosmtplib",
    "smtp-source",
    "raw",
    "mailsdk-sendmail",
    "mailsdk-sendmail-async",
)


def clients_for(connections: int) -> list[str]:
    """The clients measured on ``connections`` connections, given what mailsdk has today."""
    names = list(BASE_CLIENTS)
    if connections == 1 and has_send_many():
        names += ["mailsdk-send_many", "mailsdk-send_many-async"]
    if connections > 1 and has_pool():
        names += ["mailsdk-pool", "mailsdk-pool-async"]
        if has_process_pool():
            names.append("mailsdk-pool-2proc")
    return names


def round_trips(client: str, recipients: int) -> int:
    """Round trips per message in the steady state (for sizing runs on the delayed link)."""
    if client in ("raw", "mailsdk-send_many", "mailsdk-send_many-async") or "pool" in client:
        return 1
    if client.startswith("mailsdk-sendmail"):
        return 2  # MAIL, RCPTs and DATA in one write; then the body
    return 3 + recipients  # MAIL, each RCPT, DATA, the body: one at a time


@dataclass(frozen=True)
class Case:
    link: str
    recipients: int
    connections: int

    @property
    def key(self) -> str:
        return f"{self.link}/{self.recipients}rcpt/{self.connections}conn"


@dataclass
class MatrixConfig:
    runs: int = 3
    loopback_messages: int = 2000
    budget: float = 4.0  # seconds per run on the delayed link
    min_per_connection: int = 10
    rtt: float = 0.020
    cases: list[Case] = field(default_factory=list)


def messages_for(cfg: MatrixConfig, case: Case, client: str) -> int:
    if case.link == LOOPBACK:
        return cfg.loopback_messages
    per = int(cfg.budget / (cfg.rtt * round_trips(client, case.recipients)))
    return max(cfg.min_per_connection, per) * case.connections


def sample(
    sink: SmtpSink, port: int, case: Case, client: str, messages: int, message_file: Path
) -> Sample:
    spec: dict[str, Any] = {
        "client": client,
        "host": "127.0.0.1",
        "port": port,
        "messages": messages,
        "recipients": case.recipients,
        "connections": case.connections,
    }
    if client == "smtp-source":
        return run_smtp_source(sink, spec, message_file)
    return run_worker(sink, spec)


def run_matrix(
    cfg: MatrixConfig,
    sink: SmtpSink,
    relay_port: int,
    message_file: Path,
    log: Any = print,
) -> dict[str, dict[str, Series]]:
    results: dict[str, dict[str, Series]] = {
        c.key: {n: Series(n, c.connections) for n in clients_for(c.connections)} for c in cfg.cases
    }
    for run in range(cfg.runs):
        for case in cfg.cases:
            port = sink.port if case.link == LOOPBACK else relay_port
            for client, series in results[case.key].items():
                n = messages_for(cfg, case, client)
                s = sample(sink, port, case, client, n, message_file)
                series.samples.append(s)
                log(
                    f"run {run + 1}/{cfg.runs} {case.key:<24} {client:<24} {n:>5} msgs "
                    f"{s.rate:9.1f} msg/s {s.cpu_us:8.1f} µs/msg "
                    f"delivered {s.delivered}/{s.received}"
                )
    return results
