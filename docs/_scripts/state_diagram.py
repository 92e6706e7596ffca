"""Generate docs/state-machine.md from the transition tables in mailsdk.protocol.state.

Run: ``.venv/bin/python docs/_scripts/state_diagram.py`` (``--check`` fails if the file is stale;
tests/test_docs.py runs the check). The diagram is Mermaid, rendered by mkdocs and GitHub.
"""

from __future__ import annotations

import pathlib
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
