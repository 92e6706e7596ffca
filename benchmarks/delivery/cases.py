"""The single-purpose cases: instrumentation cost, a 100 MB message's memory, the shared rate limit."""

from __future__ import annotations

import bisect
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.delivery.mailsdk_clients import has_pool, has_send_many
from benchmarks.delivery.sampling import Series, run_worker
from benchmarks.delivery.servers import SmtpSink


def _spec(client: str, port: int, messages: int, **extra: Any) -> dict[str, Any]:
    return {
        "client": client,
        "host": "127.0.0.1",
        "port": port,
        "messages": messages,
        "recipients": 1,
        "connections": 1,
        **extra,
    }


def _stat(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def telemetry_case(sink: SmtpSink, pairs: int, messages: int, log: Any = print) -> dict[str, Any]:
    """``with_opentelemetry()`` (global providers, no SDK configured) against off: client CPU
    per message on one loopback session, in pairs whose order alternates; the ratio of each
    pair, then the median of the ratios."""
    clients = ["mailsdk-sendmail"] + (["mailsdk-send_many"] if has_send_many() else [])
    out: dict[str, Any] = {}
    for client in clients:
        off, on = Series(client, 1), Series(client + " +otel", 1)
        ratios = []
        for i in range(pairs):
            got = {}
            for otel in (False, True) if i % 2 == 0 else (True, False):
                got[otel] = run_worker(sink, _spec(client, sink.port, messages, otel=otel))
            off.samples.append(got[False])
            on.samples.append(got[True])
            ratios.append(got[True].cpu / got[False].cpu)
            log(
                f"telemetry {client:<20} pair {i + 1}/{pairs}: off {got[False].cpu_us:7.1f} "
                f"on {got[True].cpu_us:7.1f} µs/msg ratio {ratios[-1]:.3f}"
            )
        out[client] = {
            "messages": messages,
            "pairs": pairs,
            "off_cpu_us": off.stat("cpu_us"),
            "on_cpu_us": on.stat("cpu_us"),
            "ratio": _stat(ratios),
            "complete": off.complete and on.complete,
            "sdk_loaded": any(s.extra.get("otel_sdk_loaded") for s in on.samples),
        }
    return out


def memory_case(sink: SmtpSink, size: int, runs: int, log: Any = print) -> dict[str, Any]:
    """Peak RSS of sending one ``size``-byte message given as a path, over an idle interpreter
    with mailsdk (and this harness) imported."""
    from benchmarks.delivery.workload import write_big_message

    with tempfile.TemporaryDirectory(prefix="bench-big-") as tmp:
        path = Path(tmp) / "big.eml"
        write_big_message(path, size)
        series = {n: Series(n, 1) for n in ("idle", "mailsdk-path", "smtplib-path")}
        for _ in range(runs):
            for name, s in series.items():
                messages = 0 if name == "idle" else 1
                s.samples.append(run_worker(sink, _spec(name, sink.port, messages, path=str(path))))
                log(f"memory {name:<14} peak RSS {s.samples[-1].maxrss_kb / 1024:7.1f} MB")
    idle = series["idle"].stat("maxrss_kb")["median"]
    out: dict[str, Any] = {"size_mb": size / 2**20, "idle_rss_mb": idle / 1024}
    for name in ("mailsdk-path", "smtplib-path"):
        s = series[name]
        out[name] = {
            "peak_rss_mb": {k: v / 1024 for k, v in s.stat("maxrss_kb").items()},
            "extra_mb": (s.stat("maxrss_kb")["median"] - idle) / 1024,
            "complete": s.complete,
            "source": s.samples[-1].extra.get("source", "bytes"),
        }
    return out


def worst_window(stamps: list[float], window: float) -> int:
    """The most messages in any ``window``-second interval starting at a message."""
    stamps = sorted(stamps)
    return max(
        (bisect.bisect_left(stamps, t + window) - i for i, t in enumerate(stamps)), default=0
    )


def ratelimit_case(
    duration: float,
    rate: float,
    burst: int,
    window: float,
    connections: int = 8,
    *,
    warm: bool = False,
) -> dict[str, Any]:
    """A pool of ``connections`` sending ``rate x duration`` messages under one shared token
    bucket; the server's receive times (smtp-sink's counter updates) checked over every
    ``window``-second interval: at most ``rate x window + burst``.

    ``warm``: the pool first sends one unlimited message per connection (not counted), so the
    batch starts with open connections (a long-lived pool); otherwise it opens them during the
    initial burst (a fresh pool)."""
    if not has_pool():
        return {"status": "skipped", "reason": "mailsdk has no pool yet (issue 11)"}
    try:
        from mailsdk.batch import TokenBucket  # type: ignore[attr-defined,unused-ignore]  # noqa: F401
    except ImportError:
        return {"status": "skipped", "reason": "mailsdk.batch.TokenBucket not available"}
    messages = int(rate * duration)
    with SmtpSink(watch=True) as sink:
        spec = _spec("mailsdk-pool", sink.port, messages, connections=connections, warmup=warm)
        spec["rate"] = {"messages_per_second": rate, "burst": burst}
        s = run_worker(sink, spec)
        stamps = list(sink.stamps)[int(s.extra.get("warmup", 0)) :]
    worst = worst_window(stamps, window)
    allowed = rate * window + burst
    span = (max(stamps) - min(stamps)) if len(stamps) > 1 else 0.0
    return {
        "status": "measured",
        "pool": "warm" if warm else "fresh",
        "messages": messages,
        "received": len(stamps),
        "delivered": s.delivered,
        "complete": s.delivered == messages == len(stamps),
        "rate": rate,
        "burst": burst,
        "window_s": window,
        "worst_window": worst,
        "allowed": allowed,
        "achieved_rate": (len(stamps) - 1) / span if span else 0.0,
        "ok": worst <= allowed,
    }
