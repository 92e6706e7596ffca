"""Generate docs/state-machine.md from the transition tables in mailsdk.protocol.state.

Run: ``.venv/bin/python docs/_scripts/state_diagram.py`` (``--check`` fails if the file is stale;
tests/test_docs.py runs the check). The page keeps the diagram as Mermaid (GitHub renders it);
the documentation site replaces it at build time with an SVG drawn by Graphviz from the same
tables (:func:`render_svg`, called by ``state_diagram_hook.py``), so the site needs no script
from a CDN and the diagram shows offline.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

from mailsdk.protocol.state import REPLY_TRANSITIONS, SEND_TRANSITIONS

TARGET = pathlib.Path(__file__).resolve().parents[1] / "state-machine.md"

HEADER = """# The client state machine

Generated from `mailsdk/protocol/state.py` by `docs/_scripts/state_diagram.py`; do not edit.

Solid arrows: the state after the client *sends* a command (optimistic, so pipelined commands
can be queued). Dotted arrows: corrections when a reply arrives. Every state can also move to
`ERROR` (sticky) on a protocol or transport failure.

```mermaid
stateDiagram-v2
"""


#: Edges caused by connection events (not commands or replies); kept in step with connection.py.
EVENT_EDGES = (
    ("BODY", "READY", "end_body() (awaits the end-of-data reply)"),
    ("TLS_READY", "GREETED", "tls_started()"),
    ("CLOSING", "CLOSED", "EOF after QUIT"),
)


def render() -> str:
    lines = [HEADER.rstrip("\n")]
    for state, moves in SEND_TRANSITIONS.items():
        for trigger, target in moves.items():
            lines.append(f"    {state.name} --> {target.name}: {trigger.name}")
    for (trigger, outcome), (sources, target) in REPLY_TRANSITIONS.items():
        for source in sorted(sources, key=lambda s: s.name):
            lines.append(
                f"    {source.name} --> {target.name}: {trigger.name} reply {outcome.name}"
            )
    # Transitions driven by connection events rather than commands or replies.
    for source, target, label in EVENT_EDGES:
        lines.append(f"    {source} --> {target}: {label}")
    lines.append("```")
    return "\n".join(lines) + "\n"


def _edges() -> list[tuple[str, str, str, bool]]:
    """Every edge as (source, target, label, is_reply_correction)."""
    edges = []
    for state, moves in SEND_TRANSITIONS.items():
        for trigger, target in moves.items():
            edges.append((state.name, target.name, trigger.name, False))
    for (trigger, outcome), (sources, target) in REPLY_TRANSITIONS.items():
        for source in sorted(sources, key=lambda s: s.name):
            edges.append((source.name, target.name, f"{trigger.name} reply {outcome.name}", True))
    for source, target, label in EVENT_EDGES:
        edges.append((source, target, label, False))
    return edges


def render_dot() -> str:
    """The diagram as Graphviz DOT: solid send edges, dashed reply corrections."""
    lines = [
        "digraph states {",
        '  graph [rankdir=TB, fontname="sans-serif", bgcolor="transparent"];',
        '  node [shape=box, style="rounded", fontname="sans-serif", fontsize=11];',
        '  edge [fontname="sans-serif", fontsize=9];',
    ]
    for source, target, label, reply in _edges():
        style = ', style=dashed, color="#555555"' if reply else ""
        lines.append(f'  "{source}" -> "{target}" [label="{label}"{style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_svg(dot: str | None = None) -> str | None:
    """The diagram as an inline ``<svg>`` element, or ``None`` when Graphviz is not installed.

    Raises:
        subprocess.CalledProcessError: Graphviz rejected the graph.
    """
    binary = dot or shutil.which("dot")
    if binary is None:
        return None
    proc = subprocess.run(  # noqa: S603 - Graphviz found on PATH, fixed arguments
        [binary, "-Tsvg"], input=render_dot(), capture_output=True, text=True, check=True
    )
    svg = proc.stdout[proc.stdout.index("<svg") :]
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    # no blank line may end the raw HTML block the page embeds it in
    return "\n".join(line for line in svg.splitlines() if line.strip())


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is stale: run docs/_scripts/state_diagram.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
