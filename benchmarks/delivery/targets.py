"""Every target of issues 10 and 11 as a ratio of this run's medians, with PASS or FAIL.

A target whose client was not measured (``send_many`` or the pool not merged yet) is MISSING; a
series where some message was not confirmed by both the client and the server is FAIL whatever
its speed. Rows marked "info" have no bound: they are the references the issues quote.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from benchmarks.delivery.runner import LOOPBACK, RTT, Case
from benchmarks.delivery.sampling import Series

Matrix = dict[str, dict[str, Series]]


def _series(m: Matrix, link: str, rcpt: int, conn: int, client: str) -> Series | None:
    return m.get(Case(link, rcpt, conn).key, {}).get(client)


class _Targets:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        issue: int,
        name: str,
        value: Callable[[], float] | None,
        bound: float | None,
        op: str,
        complete: bool = True,
        note: str = "",
    ) -> None:
        row: dict[str, Any] = {"issue": issue, "target": name, "bound": bound, "op": op}
        if value is None:
            row |= {"value": None, "status": "MISSING", "note": note}
        else:
            v = value()
            check = {">=": operator.ge, "<=": operator.le}[op]
            if bound is None:
                status = "info"
            elif not complete:
                status = "FAIL (messages lost)"
            else:
                status = "PASS" if check(v, bound) else "FAIL"
            row |= {"value": v, "status": status, "note": note}
        self.rows.append(row)

    def ratio(
        self,
        issue: int,
        name: str,
        a: Series | None,
        b: Series | None,
        attr: str,
        bound: float | None,
        op: str,
        note: str = "",
    ) -> None:
        if a is None or b is None or not a.samples or not b.samples:
            missing = a if a is None or not a.samples else b
            label = missing.client if missing else "a client"
            self.add(issue, name, None, bound, op, note=f"{label} not measured")
            return
        self.add(
            issue,
            name,
            lambda: a.stat(attr)["median"] / b.stat(attr)["median"],
            bound,
            op,
            a.complete and b.complete,
            note,
        )

    def floor(
        self, issue: int, name: str, s: Series | None, floor: float, bound: float | None
    ) -> None:
        if s is None or not s.samples:
            self.add(issue, name, None, bound, ">=", note="not measured")
            return
        self.add(
            issue,
            name,
            lambda: s.stat("rate")["median"] / floor,
            bound,
            ">=",
            s.complete,
            f"{s.stat('rate')['median']:.1f} of {floor:.1f} msg/s",
        )


def evaluate(
    m: Matrix,
    rtt: float,
    telemetry: dict[str, Any],
    memory: dict[str, Any],
    ratelimit: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    t = _Targets()
    one = 1 / rtt
    for rcpt in (1, 10):
        for mode in ("", "-async"):
            t.floor(
                10,
                f"20 ms, 1 conn, {rcpt} rcpt: send_many{mode} / 1-RTT floor",
                _series(m, RTT, rcpt, 1, f"mailsdk-send_many{mode}"),
                one,
                0.90,
            )
        t.floor(
            10,
            f"20 ms, 1 conn, {rcpt} rcpt: sendmail loop / floor",
            _series(m, RTT, rcpt, 1, "mailsdk-sendmail"),
            one,
            None,
        )
        t.floor(
            10,
            f"20 ms, 1 conn, {rcpt} rcpt: raw reference / floor",
            _series(m, RTT, rcpt, 1, "raw"),
            one,
            None,
        )
    lb = {c: _series(m, LOOPBACK, 1, 1, c) for c in ("smtplib", "raw", "mailsdk-sendmail")}
    for mode in ("", "-async"):
        many = _series(m, LOOPBACK, 1, 1, f"mailsdk-send_many{mode}")
        name = f"loopback, 1 conn, 1 rcpt: send_many{mode}"
        t.ratio(10, f"{name} msg/s / smtplib", many, lb["smtplib"], "rate", 1.5, ">=")
        t.ratio(10, f"{name} CPU/msg / smtplib", many, lb["smtplib"], "cpu_us", 0.7, "<=")
        t.ratio(10, f"{name} msg/s / raw reference", many, lb["raw"], "rate", 0.8, ">=")
    t.ratio(
        10,
        "loopback: Session.sendmail CPU/msg / smtplib",
        lb["mailsdk-sendmail"],
        lb["smtplib"],
        "cpu_us",
        0.8,
        "<=",
    )
    path = memory.get("mailsdk-path")
    streamed = bool(path and path["source"].startswith("path"))
    note = ""
    if path:
        note = f"source: {path['source']}; smtplib +{memory['smtplib-path']['extra_mb']:.0f} MB"
        if not streamed:
            note += f"; mailsdk with the bytes: +{path['extra_mb']:.0f} MB"
    t.add(
        10,
        f"{memory.get('size_mb', 0):.0f} MB message as a path: extra peak RSS (MB)",
        (lambda: path["extra_mb"]) if path and streamed else None,
        48.0,
        "<=",
        bool(path and path["complete"]),
        note,
    )
    for client, res in telemetry.items():
        t.add(
            10,
            f"with_opentelemetry() (API only) CPU/msg / off: {client}",
            lambda res=res: res["ratio"]["median"],
            1.05,
            "<=",
            res["complete"],
            f"{res['pairs']} pairs of {res['messages']} msgs; SDK loaded: {res['sdk_loaded']}",
        )
    for rcpt in (1, 10):
        for mode in ("", "-async"):
            t.floor(
                11,
                f"20 ms, 8 conn, {rcpt} rcpt: pool{mode} / 8x floor",
                _series(m, RTT, rcpt, 8, f"mailsdk-pool{mode}"),
                8 * one,
                0.85,
            )
        t.floor(
            11,
            f"20 ms, 8 conn, {rcpt} rcpt: 8 sendmail sessions / 8x floor",
            _series(m, RTT, rcpt, 8, "mailsdk-sendmail"),
            8 * one,
            None,
        )
        for mode in ("", "-async", "-2proc"):
            pool = _series(m, LOOPBACK, rcpt, 8, f"mailsdk-pool{mode}")
            name = f"loopback, 8 conn, {rcpt} rcpt: pool{mode}"
            for peer, bound in (("smtplib", 3.0), ("aiosmtplib", 3.0), ("smtp-source", 1.0)):
                t.ratio(
                    11,
                    f"{name} / {peer} (8)",
                    pool,
                    _series(m, LOOPBACK, rcpt, 8, peer),
                    "rate",
                    bound,
                    ">=",
                )
    for rl in ratelimit or [{"reason": "not run"}]:
        if rl.get("status") != "measured":
            t.add(11, "shared rate limit holds", None, 0.0, "<=", note=rl.get("reason", ""))
            continue
        t.add(
            11,
            f"rate limit {rl['rate']:g}/s burst {rl['burst']}, {rl['pool']} pool: worst "
            f"{rl['window_s']:g} s window - allowed",
            lambda rl=rl: rl["worst_window"] - rl["allowed"],
            0.0,
            "<=",
            rl["complete"],
            f"worst {rl['worst_window']} of {rl['allowed']:.0f} allowed, "
            f"{rl['achieved_rate']:.1f} msg/s achieved",
        )
    return t.rows
