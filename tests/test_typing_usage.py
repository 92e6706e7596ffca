"""``tests/typing/usage.py`` (a consumer of the public API) passes ``mypy --strict``.

``--follow-imports=silent`` reports only the consumer file, as mypy does for an installed
``py.typed`` package: the library's own errors are the ``mypy --strict src`` gate's business.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
USAGE = ROOT / "tests" / "typing" / "usage.py"


def run_mypy(path: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--follow-imports=silent",
            "--no-incremental",
            str(path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_usage_file_passes_mypy_strict() -> None:
    proc = run_mypy(USAGE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_mypy_would_catch_a_wrong_type(tmp_path: pathlib.Path) -> None:
    bad = ROOT / "tests" / "typing" / f"_bad_{tmp_path.name}.py"
    bad.write_text(
        "from typing import assert_type\n"
        "from mailsdk import AsyncClient, ClientBuilder\n"
        "assert_type(ClientBuilder.smtp('h').build(), AsyncClient)\n"
    )
    try:
        proc = run_mypy(bad)
    finally:
        bad.unlink()
    assert proc.returncode == 1
    assert "assert-type" in proc.stdout
