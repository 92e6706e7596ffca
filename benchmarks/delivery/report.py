"""The run's record: the machine, every series, the targets; as JSON and as a Markdown table."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import mailsdk
from benchmarks.delivery.mailsdk_clients import has_pool, has_send_many
from benchmarks.delivery.sampling import ROOT, Series


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_start": os.getloadavg(),
        "postfix": _run(["dpkg-query", "-W", "-f", "${Version}", "postfix"]),
        "mailsdk": mailsdk.__version__,
        "commit": _run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "send_many": has_send_many(),
        "pool": has_pool(),
    }


def _range(stat: dict[str, float], fmt: str) -> str:
    return f"{stat['median']:{fmt}} ({stat['min']:{fmt}}-{stat['max']:{fmt}})"


def _mb(s: Series) -> str:
    kb = s.stat("maxrss_kb")["median"]
    return f"{kb / 1024:.0f}" if kb else "n/a"


def series_table(matrix: dict[str, dict[str, Series]]) -> list[str]:
    lines = [
        "| case | client | msgs | msg/s median (min-max) | client CPU µs/msg | peak RSS MB | all delivered |",
        "|---|---|---:|---|---|---:|---|",
    ]
    for key, clients in matrix.items():
        for name, s in clients.items():
            if not s.samples:
                continue
            lines.append(
                f"| {key} | {name} | {s.samples[0].messages} | {_range(s.stat('rate'), '.1f')} "
                f"| {_range(s.stat('cpu_us'), '.0f')} "
                f"| {_mb(s)} | {'yes' if s.complete else 'NO'} |"
            )
    return lines


def _value(row: dict[str, Any]) -> str:
    v = row["value"]
    return "—" if v is None else f"{v:.3f}"


def markdown(record: dict[str, Any], matrix: dict[str, dict[str, Series]]) -> str:
    m = record["machine"]
    out = [
        f"# Delivery benchmark ({'smoke' if record['smoke'] else 'full'} run, {m['date_utc']} UTC)",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, kernel {m['kernel']}, "
        f"Postfix {m['postfix']}; load average at start {m['loadavg_start'][0]:.2f}, "
        f"at end {record['loadavg_end'][0]:.2f}. mailsdk {m['mailsdk']} at {m['commit']} "
        f"(send_many: {m['send_many']}, pool: {m['pool']}).",
        f"Link: loopback, and a relay adding {record['rtt_nominal'] * 500:.0f} ms each way "
        f"(measured NOOP round trip {record['rtt_measured'] * 1e3:.1f} ms); the floors use the "
        f"nominal {record['rtt_nominal'] * 1e3:.0f} ms. Runs per series: {record['runs']}.",
        "",
        "## Targets",
        "",
        "| issue | target | value | bound | status | note |",
        "|---|---|---:|---|---|---|",
    ]
    for row in record["targets"]:
        bound = "" if row["bound"] is None else f"{row['op']} {row['bound']:g}"
        out.append(
            f"| {row['issue']} | {row['target']} | {_value(row)} | {bound} | {row['status']} "
            f"| {row['note']} |"
        )
    out += ["", "## Throughput", "", *series_table(matrix), ""]
    tel = record.get("telemetry") or {}
    if tel:
        out += ["## Instrumentation (API only) vs off", ""]
        out += ["| client | off µs/msg | on µs/msg | ratio median (min-max) |", "|---|---|---|---|"]
        for client, r in tel.items():
            out.append(
                f"| {client} | {_range(r['off_cpu_us'], '.1f')} | {_range(r['on_cpu_us'], '.1f')} "
                f"| {_range(r['ratio'], '.3f')} |"
            )
        out.append("")
    mem = record.get("memory") or {}
    if mem:
        out += [f"## {mem['size_mb']:.0f} MB message as a path", ""]
        out += [f"Idle interpreter with mailsdk imported: {mem['idle_rss_mb']:.1f} MB.", ""]
        out += ["| client | source | peak RSS MB | extra MB |", "|---|---|---|---:|"]
        for name in ("mailsdk-path", "smtplib-path"):
            r = mem[name]
            out.append(
                f"| {name} | {r['source']} | {_range(r['peak_rss_mb'], '.0f')} "
                f"| {r['extra_mb']:.0f} |"
            )
        out.append("")
    for key in ("ratelimit", "ratelimit_warm"):
        rl = record.get(key) or {}
        if not rl:
            continue
        out += [f"## Shared rate limit ({rl.get('pool', 'fresh')} pool)", ""]
        if rl.get("status") == "measured":
            out.append(
                f"{rl['messages']} messages at {rl['rate']:g}/s (burst {rl['burst']}) over 8 "
                f"connections: worst {rl['window_s']:g} s window {rl['worst_window']} messages, "
                f"allowed {rl['allowed']:.0f}; achieved {rl['achieved_rate']:.1f} msg/s; "
                f"server received {rl['received']}."
            )
        else:
            out.append(f"Skipped: {rl.get('reason')}.")
        out.append("")
    return "\n".join(out)
