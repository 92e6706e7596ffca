"""CPython's own ``Lib/test/test_smtplib.py`` run against ``mailsdk.compat.smtplib``.

The suite is run twice in subprocesses (so replacing ``sys.modules["smtplib"]`` and the
asyncore/smtpd deprecation warnings never touch this pytest process): once against the real
``smtplib`` to learn the expected counts, once with ``mailsdk.compat.smtplib`` substituted before
the test module is imported. Ours must run the same number of tests with no failure, no error
and no more skips than the stdlib run.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

_RUNNER = """
import io, json, sys, unittest
which = sys.argv[1]
if which == "compat":
    import mailsdk.compat.smtplib as compat
    sys.modules["smtplib"] = compat
import test.test_smtplib as suite_module
if which == "compat":
    assert suite_module.smtplib is compat, "the substitution did not take"
else:
    import smtplib
    assert smtplib.__name__ == "smtplib" and "mailsdk" not in (smtplib.__file__ or "")
suite = unittest.defaultTestLoader.loadTestsFromModule(suite_module)
result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=2).run(suite)
print(json.dumps({
    "module": suite_module.smtplib.__name__,
    "run": result.testsRun,
    "failures": [[t.id(), tb] for t, tb in result.failures],
    "errors": [[t.id(), tb] for t, tb in result.errors],
    "skipped": [t.id() for t, _reason in result.skipped],
}))
"""


def _have_cpython_suite() -> bool:
    try:
        return all(
            importlib.util.find_spec(name) is not None
            for name in ("test.test_smtplib", "test.mock_socket", "test.support")
        )
    except ImportError:  # no "test" package at all
        return False


pytestmark = pytest.mark.skipif(
    not _have_cpython_suite(), reason="this Python ships without the stdlib test package"
)


def _run(which: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _RUNNER, which],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def stdlib_result() -> dict[str, object]:
    return _run("stdlib")


@pytest.fixture(scope="module")
def compat_result() -> dict[str, object]:
    return _run("compat")


@pytest.mark.timeout(300)
def test_stdlib_baseline_is_green(stdlib_result: dict[str, object]) -> None:
    assert stdlib_result["module"] == "smtplib"
    assert isinstance(stdlib_result["run"], int) and stdlib_result["run"] > 50
    assert stdlib_result["failures"] == [] and stdlib_result["errors"] == []


@pytest.mark.timeout(300)
def test_cpython_suite_passes_in_full_with_compat(
    stdlib_result: dict[str, object], compat_result: dict[str, object]
) -> None:
    assert compat_result["module"] == "mailsdk.compat.smtplib"
    assert compat_result["failures"] == [], compat_result["failures"]
    assert compat_result["errors"] == [], compat_result["errors"]
    # Same tests run as against the real smtplib, and none skipped that the stdlib run ran.
    assert compat_result["run"] == stdlib_result["run"]
    stdlib_skipped = stdlib_result["skipped"]
    compat_skipped = compat_result["skipped"]
    assert isinstance(stdlib_skipped, list) and isinstance(compat_skipped, list)
    assert len(compat_skipped) <= len(stdlib_skipped)
    assert set(compat_skipped) <= set(stdlib_skipped)
