"""The layer rules of docs/architecture.md hold: the pure packages import no I/O, and import-linter's
contracts (pyproject ``[tool.importlinter]``) pass.

The AST walk covers what import-linter cannot (standard-library modules): ``protocol``,
``esmtp``, ``flows``, ``dkim`` and the pure ``auth`` modules must not import socket, ssl, asyncio,
selectors, threading, time, logging, opentelemetry or msal, even under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "mailsdk"
FORBIDDEN = {
    "socket",
    "ssl",
    "asyncio",
    "selectors",
    "threading",
    "time",
    "logging",
    "opentelemetry",
    "msal",
}
PURE_PACKAGES = ["protocol", "esmtp", "flows", "auth", "dkim"]
#: I/O edges of the auth package (docs/architecture.md: exempt from the pure-module rule).
AUTH_IO_EDGES = {"tokens.py", "msal.py", "google.py"}
#: Pure modules inside packages that also do I/O: the sans-IO proxy handshakes of the transport,
#: the pool's bookkeeping, the batch's decisions.
PURE_MODULES = [
    "transport/_proxy_handshake.py",
    "pool/_book.py",
    "pool/_work.py",
    "batch/retry.py",
]


def pure_modules() -> list[pathlib.Path]:
    files = []
    for package in PURE_PACKAGES:
        for path in sorted((SRC / package).rglob("*.py")):
            if package == "auth" and path.name in AUTH_IO_EDGES:
                continue
            files.append(path)
    files.extend(SRC / module for module in PURE_MODULES)
    return files


def imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "__import__"
            and node.args
        ):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                roots.add(arg.value.split(".")[0])
    return roots


def test_there_are_pure_modules_to_check() -> None:
    names = {p.relative_to(SRC).as_posix() for p in pure_modules()}
    assert {
        "protocol/connection.py",
        "flows/transaction.py",
        "auth/plain.py",
        "dkim/signer.py",
    } <= names
    assert "transport/_proxy_handshake.py" in names
    assert "auth/tokens.py" not in names


@pytest.mark.parametrize("path", pure_modules(), ids=lambda p: p.relative_to(SRC).as_posix())
def test_pure_module_imports_no_io(path: pathlib.Path) -> None:
    bad = (
        imported_roots(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))) & FORBIDDEN
    )
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


def test_the_checker_catches_a_forbidden_import() -> None:
    tree = ast.parse(
        "import typing\nif typing.TYPE_CHECKING:\n    import socket\nfrom asyncio import sleep\n"
    )
    assert imported_roots(tree) & FORBIDDEN == {"socket", "asyncio"}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_import_linter_contracts() -> None:
    exe = shutil.which("lint-imports", path=str(pathlib.Path(sys.executable).parent))
    assert exe is not None, "import-linter is not installed in the venv"
    proc = subprocess.run(
        [exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "broken" in proc.stdout.lower()
    assert "0 broken" in proc.stdout.lower()
