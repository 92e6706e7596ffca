"""The public facade: ``import mailsdk`` works, ``__all__`` is complete and sorted, and every
public name (and every public method of the exported classes) has a docstring."""

from __future__ import annotations
import __future__

import importlib
import inspect
import subprocess
import sys
import types

import pytest

import mailsdk

PUBLIC_MODULES = [
    "mailsdk",
    "mailsdk.client",
    "mailsdk.flows",
    "mailsdk.builder",
    "mailsdk.config",
    "mailsdk.api",
    "mailsdk.errors",
    "mailsdk.cli",
    "mailsdk.batch",
    "mailsdk.pool",
    "mailsdk.dkim",
    "mailsdk.url",
    "mailsdk.testing",
    "mailsdk.profiles",
]


def test_import_in_a_fresh_interpreter() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import mailsdk, sys; print(mailsdk.__version__); assert 'aiosmtpd' not in sys.modules; assert 'dkim' not in sys.modules",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == mailsdk.__version__


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_unique_and_resolvable(name: str) -> None:
    module = importlib.import_module(name)
    names = list(module.__all__)
    assert names == sorted(names), f"{name}.__all__ is not sorted"
    assert len(names) == len(set(names))
    for attr in names:
        assert hasattr(module, attr), f"{name}.{attr} is in __all__ but missing"


def test_all_is_complete() -> None:
    exported = set(mailsdk.__all__)
    missing = {
        n
        for n, obj in vars(mailsdk).items()
        if not n.startswith("_")
        and not isinstance(obj, types.ModuleType | __future__._Feature)
        and n not in exported
    }
    assert not missing, f"public names missing from mailsdk.__all__: {sorted(missing)}"
    # every error class of the tree is exported at the top
    from mailsdk import errors

    assert set(errors.__all__) <= exported


def test_every_public_name_has_a_docstring() -> None:
    undocumented = []
    for name in mailsdk.__all__:
        obj = getattr(mailsdk, name)
        if name == "__version__":
            continue
        if not inspect.getdoc(obj):
            undocumented.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                target = member.fget if isinstance(member, property) else member
                if isinstance(target, classmethod | staticmethod):
                    target = target.__func__
                if inspect.isfunction(target) and not inspect.getdoc(target):
                    undocumented.append(f"{name}.{attr}")
    assert not undocumented, f"missing docstrings: {undocumented}"


def test_errors_are_mail_errors_and_os_errors() -> None:
    for name in mailsdk.errors.__all__:
        cls = getattr(mailsdk, name)
        assert issubclass(cls, mailsdk.MailError)
        assert issubclass(cls, OSError)
