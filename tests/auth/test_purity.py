"""The pure SASL modules import only L0 and non-I/O stdlib (docs/architecture.md)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import mailsdk.auth

AUTH_DIR = Path(mailsdk.auth.__file__).parent
PURE = ["base", "registry", "plain", "login", "cram_md5", "scram", "oauth", "_saslprep"]
BANNED_PREFIXES = (
    "socket",
    "ssl",
    "asyncio",
    "selectors",
    "threading",
    "time",
    "logging",
    "msal",
    "opentelemetry",
    "scramp",  # imports ssl at module level
    "mailsdk.protocol",
    "mailsdk.esmtp",
    "mailsdk.flows",
    "mailsdk.transport",
    "mailsdk.telemetry",
    "mailsdk.client",
    "mailsdk.auth.tokens",
    "mailsdk.auth.msal",
    "mailsdk.auth.google",
)


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports(module: str) -> None:
    imports = imported_modules(AUTH_DIR / f"{module}.py")
    assert imports, "parsed nothing"
    for name in imports:
        for banned in BANNED_PREFIXES:
            assert name != banned, f"mailsdk.auth.{module} imports {name}"
            assert not name.startswith(banned + "."), f"mailsdk.auth.{module} imports {name}"
        if name.startswith("mailsdk."):
            assert name in {"mailsdk.errors", "mailsdk._secret"} or name.startswith(
                "mailsdk.auth."
            ), name


@pytest.mark.parametrize("module", PURE)
def test_module_has_sorted_complete_all(module: str) -> None:
    mod = importlib.import_module(f"mailsdk.auth.{module}")
    assert mod.__doc__
    assert "Layer:" in mod.__doc__
    for name in mod.__all__:
        assert hasattr(mod, name), name
        assert getattr(mod, name).__doc__ or name.isupper() or name == "ENTRY_POINT_GROUP"


def test_package_all() -> None:
    assert len(set(mailsdk.auth.__all__)) == len(mailsdk.auth.__all__)
    for name in mailsdk.auth.__all__:
        assert hasattr(mailsdk.auth, name), name
