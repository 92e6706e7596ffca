"""Docs generated from code stay current."""

from __future__ import annotations

import pathlib
import runpy
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_state_diagram_is_current() -> None:
    script = ROOT / "docs" / "_scripts" / "state_diagram.py"
    module = runpy.run_path(str(script))
    assert module["main"](["--check"]) == 0, "run docs/_scripts/state_diagram.py"


def test_state_diagram_covers_every_state() -> None:
    from mailsdk.protocol.state import ClientState

    text = (ROOT / "docs" / "state-machine.md").read_text()
    missing = [s.name for s in ClientState if s.name not in text and s is not ClientState.ERROR]
    assert not missing, f"states absent from the diagram: {missing}"


def test_readme_gives_exactly_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    block = (
        readme.split("## Set-up: the two commands", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    )
    commands = [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert commands == [
        "python3 -m venv .venv && .venv/bin/pip install -e '.[demo]' && .venv/bin/mailsdk demo",
        "bash scripts/test",
    ]
    assert "bash scripts/test" in (ROOT / ".ci" / "run").read_text()
    assert sys.version_info >= (3, 11)


def test_docs_and_sources_never_point_outside_the_repository() -> None:
    # docs/architecture.md is the project's own record; no page or docstring may send a reader
    # to a design file that is not in the repository.
    root = ROOT
    offenders = [
        str(path.relative_to(root))
        for folder in ("docs", "src")
        for path in (root / folder).rglob("*")
        if path.suffix in (".md", ".py", ".toml", ".txt")
        and "DESIGN.md" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
    assert "DESIGN.md" not in (root / "pyproject.toml").read_text(encoding="utf-8")
