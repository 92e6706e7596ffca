"""Every Python example in docs/testing-kit.md runs: plain blocks as scripts, ``# file:``
blocks as a pytest project (conftest plus tests) run by pytester with the opt-in plugin."""

from __future__ import annotations

import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "testing-kit.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
FILES = {
    block.split("\n", 1)[0].removeprefix("# file: ").strip(): block
    for block in BLOCKS
    if block.startswith("# file: ")
}
SCRIPTS = [block for block in BLOCKS if not block.startswith("# file: ")]


def test_the_page_has_examples() -> None:
    assert len(SCRIPTS) >= 2
    assert set(FILES) == {"conftest.py", "test_notifications.py"}
    assert 'pytest_plugins = ["mailsdk.testing.pytest_plugin"]' in FILES["conftest.py"]


@pytest.mark.parametrize("index", range(len(SCRIPTS)))
def test_script_example_runs(index: int) -> None:
    code = compile(SCRIPTS[index], f"{DOC.name}[{index}]", "exec")
    exec(code, {"__name__": f"docs_example_{index}"})


def test_pytest_example_passes_with_the_plugin_enabled_by_conftest(
    pytester: pytest.Pytester,
) -> None:
    for name, text in FILES.items():
        pytester.makepyfile(**{name.removesuffix(".py"): text})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3)


def test_the_plugin_is_not_enabled_without_opting_in(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x(mail_server):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'mail_server' not found*"])
