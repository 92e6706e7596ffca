"""The delivery benchmark: ``.venv/bin/python -m benchmarks.delivery [--smoke] [options]``.

Starts Postfix's smtp-sink and the 20 ms relay, runs every client (each in its own process) on
every case, then the instrumentation, memory and rate-limit cases, prints the targets of issues
10 and 11 with PASS/FAIL and writes ``benchmarks/results/latest.json`` and ``latest.md``
(``smoke.json``/``smoke.md`` with ``--smoke``). ``--smoke`` uses tiny counts (well under a
minute) and checks only that every client delivered every message.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.delivery import cases, report, targets
from benchmarks.delivery.runner import LOOPBACK, RTT, Case, MatrixConfig, run_matrix
from benchmarks.delivery.sampling import ROOT, Series
from benchmarks.delivery.servers import Relay, SmtpSink, measure_rtt
from benchmarks.delivery.workload import smtp_source_file

PARTS = ("throughput", "telemetry", "memory", "ratelimit")


def _config(smoke: bool, runs: int | None, messages: int | None) -> dict[str, Any]:
    if smoke:
        matrix = MatrixConfig(runs=1, loopback_messages=16, budget=0.0, min_per_connection=2)
        matrix.cases = [
            Case(LOOPBACK, 1, 1),
            Case(LOOPBACK, 1, 8),
            Case(RTT, 10, 1),
            Case(RTT, 10, 8),
        ]
        extra = {"pairs": 1, "tel_messages": 30, "big": 2 * 2**20, "mem_runs": 1}
        extra |= {"rl_duration": 2.0, "rl_window": 1.0}
    else:
        matrix = MatrixConfig()
        matrix.cases = [
            Case(link, r, c) for link in (LOOPBACK, RTT) for r in (1, 10) for c in (1, 8)
        ]
        extra = {"pairs": 7, "tel_messages": 3000, "big": 100 * 2**20, "mem_runs": 3}
        extra |= {"rl_duration": 60.0, "rl_window": 10.0}
    if runs is not None:
        matrix.runs = runs
        extra["mem_runs"] = runs
    if messages is not None:
        matrix.loopback_messages = messages
    return {"matrix": matrix, "rl_rate": 50.0, "rl_burst": 25, **extra}


def run(
    *, smoke: bool, parts: tuple[str, ...] = PARTS, runs: int | None = None,
    messages: int | None = None, log: Any = print,
) -> tuple[dict[str, Any], dict[str, dict[str, Series]]]:  # fmt: skip
    """Run the benchmark; the record (what the JSON file holds) and the throughput series."""
    cfg = _config(smoke, runs, messages)
    mcfg: MatrixConfig = cfg["matrix"]
    record: dict[str, Any] = {"smoke": smoke, "machine": report.machine(), "runs": mcfg.runs}
    matrix: dict[str, dict[str, Series]] = {}
    with (
        SmtpSink() as sink,
        Relay(sink.port, mcfg.rtt / 2) as relay,
        tempfile.TemporaryDirectory() as tmp,
    ):
        record["rtt_nominal"] = mcfg.rtt
        record["rtt_measured"] = measure_rtt(relay.port)
        log(
            f"smtp-sink on {sink.port}, relay on {relay.port}: RTT {record['rtt_measured'] * 1e3:.1f} ms"
        )
        if "throughput" in parts:
            message_file = Path(tmp) / "message.txt"
            smtp_source_file(message_file)
            matrix = run_matrix(mcfg, sink, relay.port, message_file, log)
        if "telemetry" in parts:
            record["telemetry"] = cases.telemetry_case(sink, cfg["pairs"], cfg["tel_messages"], log)
        if "memory" in parts:
            record["memory"] = cases.memory_case(sink, cfg["big"], cfg["mem_runs"], log)
    if "ratelimit" in parts:
        args = (cfg["rl_duration"], cfg["rl_rate"], cfg["rl_burst"], cfg["rl_window"])
        record["ratelimit"] = cases.ratelimit_case(*args)
        if record["ratelimit"].get("status") == "measured":
            record["ratelimit_warm"] = cases.ratelimit_case(*args, warm=True)
    record["loadavg_end"] = os.getloadavg()
    record["matrix"] = {k: [s.to_json() for s in v.values()] for k, v in matrix.items()}
    record["targets"] = targets.evaluate(
        matrix, mcfg.rtt, record.get("telemetry", {}), record.get("memory", {}),
        [record[k] for k in ("ratelimit", "ratelimit_warm") if k in record],
    )  # fmt: skip
    return record, matrix


def incomplete(record: dict[str, Any]) -> list[str]:
    """Every series (and case) in which some message was not confirmed by client and server."""
    bad = [
        f"{case} {s['client']}"
        for case, series in record["matrix"].items()
        for s in series
        if not s["complete"]
    ]
    bad += [f"telemetry {c}" for c, r in record.get("telemetry", {}).items() if not r["complete"]]
    mem = record.get("memory") or {}
    bad += [
        f"memory {c}"
        for c in ("mailsdk-path", "smtplib-path")
        if c in mem and not mem[c]["complete"]
    ]
    for key in ("ratelimit", "ratelimit_warm"):
        rl = record.get(key) or {}
        if rl.get("status") == "measured" and not rl["complete"]:
            bad.append(key)
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.delivery", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--smoke", action="store_true", help="tiny counts; check delivery only")
    parser.add_argument("--runs", type=int, help="runs per series (default 3; smoke 1)")
    parser.add_argument("--messages", type=int, help="messages per loopback run (default 2000)")
    parser.add_argument("--only", action="append", choices=PARTS, help="run only these parts")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    record, matrix = run(
        smoke=args.smoke, parts=tuple(args.only or PARTS), runs=args.runs, messages=args.messages
    )
    stem = "smoke" if args.smoke else "latest"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
    text = report.markdown(record, matrix)
    (args.out / f"{stem}.md").write_text(text + "\n")
    print(text)
    bad = incomplete(record)
    if bad:
        print("NOT every message was delivered in: " + ", ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
