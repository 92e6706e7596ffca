"""The integrations' public names: sorted, resolvable ``__all__`` and a docstring for every
public class, function and method (the same bar as the top-level facade)."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = [
    "mailsdk.integrations",
    "mailsdk.integrations.redis",
    "mailsdk.integrations.celery",
    "mailsdk.integrations.django",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_resolvable_and_documented(name: str) -> None:
    extra = name.rsplit(".", 1)[-1]
    if extra in ("redis", "celery", "django"):
        pytest.importorskip(extra, reason=f"the {extra} extra is not installed")
    if extra == "django":
        from tests._support.django_setup import ensure_django

        ensure_django()
    module = importlib.import_module(name)
    assert inspect.getdoc(module)
    names = list(module.__all__)
    assert names == sorted(names)
    undocumented = []
    for attr in names:
        obj = getattr(module, attr)
        if isinstance(obj, str):
            continue
        if not inspect.getdoc(obj):
            undocumented.append(attr)
        if inspect.isclass(obj):
            for member_name, member in vars(obj).items():
                if member_name.startswith("_"):
                    continue
                target = member.fget if isinstance(member, property) else member
                if isinstance(target, classmethod | staticmethod):
                    target = target.__func__
                if inspect.isfunction(target) and not inspect.getdoc(target):
                    undocumented.append(f"{attr}.{member_name}")
    assert not undocumented, undocumented


def test_importing_the_integrations_package_needs_no_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys, mailsdk.integrations, mailsdk.integrations._errors;"
        "assert not {'redis', 'celery', 'django'} & set(sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
