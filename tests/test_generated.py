"""The blocking facades are generated from the asyncio ones by ``scripts/unasync.py``.

A stale generated file fails here (and in ``.ci/run``): edit the asyncio original, then run
``python scripts/unasync.py``. The rest checks the rewrite rules themselves on small modules.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from mailsdk import Client, LMTPClient, Session
from mailsdk.pool import Pool

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "unasync.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unasync_script", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


unasync = load_script()


def convert(source: str, phrases: tuple[tuple[str, str], ...] = ()) -> str:
    result: str = unasync.convert(textwrap.dedent(source), phrases)
    return result


def test_generated_files_are_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    status = unasync.main(["--check"])
    out, err = capsys.readouterr()
    assert status == 0, f"stale generated files (run python scripts/unasync.py):\n{out}{err}"


def test_every_generated_file_says_so_and_names_its_source() -> None:
    for target in unasync.TARGETS:
        head = (SCRIPT.parent.parent / target.generated).read_text(encoding="utf-8")[:300]
        assert head.startswith(f"# Generated from {target.source} by scripts/unasync.py")


def test_check_reports_a_stale_file_with_a_diff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.py").write_text("async def f() -> None:\n    await g()\n")
    (tmp_path / "s.py").write_text("def f() -> None:\n    g(1)\n")
    monkeypatch.setattr(unasync, "ROOT", tmp_path)
    monkeypatch.setattr(unasync, "TARGETS", (unasync.Target("a.py", "s.py"),))
    assert unasync.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert "-    g(1)\n" in out
    assert "+    g()\n" in out
    assert unasync.main([]) == 0  # regenerate, then the check passes
    assert unasync.main(["--check"]) == 0
    assert (tmp_path / "s.py").read_text().endswith("def f() -> None:\n    g()\n")


def test_async_keywords_and_names_are_rewritten_in_code_not_inside_other_words() -> None:
    out = convert(
        """\
        async def run(session: AsyncSession) -> AsyncIterator[int]:
            async with session:
                async for item in aiter(session):
                    yield await item.aclose()
            waiter = "maybe_await is a name, not the keyword"
        """
    )
    assert out == textwrap.dedent(
        """\
        def run(session: Session) -> Iterator[int]:
            with session:
                for item in iter(session):
                    yield item.close()
            waiter = "maybe_await is a name, not the keyword"
        """
    )


def test_docstrings_and_comments_get_the_blocking_wording() -> None:
    out = convert(
        '''\
        class AsyncPool:
            """A task-safe pool; use it with ``async with``, ``await pool.send(m)``.

            See :class:`AsyncSession` and :meth:`aclose`.
            """

            # an asyncio detail
            lock = asyncio.Lock()
        '''
    )
    assert '"""A thread-safe pool; use it with ``with``, ``pool.send(m)``.' in out
    assert "See :class:`Session` and :meth:`close`." in out
    assert "# a blocking detail" in out
    assert "lock = threading.Lock()" in out


def test_calls_that_only_exist_to_be_awaited_are_unwrapped() -> None:
    out = convert(
        """\
        async def release(self) -> None:
            await maybe_await(self._limiter.release(f(a), AsyncSession))
            await asyncio.shield(session.aclose())
        """
    )
    assert out == textwrap.dedent(
        """\
        def release(self) -> None:
            self._limiter.release(f(a), Session)
            session.close()
        """
    )


def test_pragmas_drop_replace_add_and_remove_names() -> None:
    out = convert(
        """\
        import contextlib
        from typing import AsyncThing, Thing  # unasync: drop AsyncThing

        # unasync: add import threading
        box = []  # unasync: drop
        # unasync: becomes steps = driver.steps(flow)
        steps = driver.steps(flow, box, flush=True)
        # unasync: drop AsyncConnectionLimiter
        limiter: ConnectionLimiter | AsyncConnectionLimiter | None = None
        items: Iterable[int] | AsyncIterable[int]  # unasync: drop AsyncIterable
        # unasync: async-only
        # the event loop runs this
        loop_only = 1
        # unasync: end
        """
    )
    assert out == textwrap.dedent(
        """\
        import contextlib
        from typing import Thing
        import threading
        steps = driver.steps(flow)
        limiter: ConnectionLimiter | None = None
        items: Iterable[int]
        """
    )


def test_an_added_import_joins_the_import_block_above_it() -> None:
    out = convert(
        """\
        from a import b

        # unasync: add from c import d
        from e import f
        """
    )
    assert out == "from a import b\nfrom c import d\nfrom e import f\n"
    # ... but the blank line between two sections (standard library, this repository) stays.
    out = convert("import time\n\n# unasync: add import threading\nfrom mailsdk import x\n")
    assert out == "import time\nimport threading\nfrom mailsdk import x\n"
    out = convert("import time\n\n# unasync: add from mailsdk import y\nfrom mailsdk import x\n")
    assert out == "import time\n\nfrom mailsdk import y\nfrom mailsdk import x\n"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('"""Returns an awaitable."""\n', "awaitable"),
        ("x = 1  # cancels the task on the event loop\n", "event loop"),
        ("x = AsyncThing()\n", "AsyncThing"),
        ("x = 1  # unasync: teleport\n", "unknown pragma"),
        ("x = 1  # unasync: drop Missing\n", "no such name"),
        ("# unasync: async-only\nx = 1\n", "without its end"),
        ("# unasync: drop\n", "without its end or its line"),
    ],
)
def test_what_cannot_be_generated_safely_is_refused(source: str, message: str) -> None:
    with pytest.raises(unasync.UnasyncError, match=re.escape(message)):
        convert(source)


def test_a_per_file_phrase_that_no_longer_matches_is_an_error() -> None:
    with pytest.raises(unasync.UnasyncError, match="stale phrase rules"):
        convert('"""Nothing to see."""\n', phrases=(("gone wording", "new wording"),))
    assert convert('"""Old words."""\n', phrases=(("Old", "New"),)) == '"""New words."""\n'
    # A phrase's replacement is final: it is not renamed again (``async_pool`` is a NAME).
    out = convert(
        '"""See ``sync_pool.py``."""\n', phrases=(("``sync_pool.py``", "``async_pool.py``"),)
    )
    assert out == '"""See ``async_pool.py``."""\n'


@pytest.mark.parametrize("cls", [Client, Session, LMTPClient, Pool], ids=lambda c: c.__name__)
def test_blocking_docstrings_never_speak_asyncio(cls: type) -> None:
    leak = re.compile(r"\b(?:await\w*|async|asyncio|asynchronous|event loop|tasks?)\b|``async ")
    docs = {cls.__name__: inspect.getdoc(cls)} | {
        name: inspect.getdoc(member)
        for name, member in vars(cls).items()
        if callable(member) or isinstance(member, property)
    }
    for name, doc in docs.items():
        assert not leak.search(doc or ""), f"{cls.__name__}.{name}: {doc}"
    assert inspect.getdoc(sys.modules[cls.__module__]), cls.__module__
    assert not leak.search(inspect.getdoc(sys.modules[cls.__module__]) or "")


def test_sync_only_blocks_are_uncommented_and_may_follow_an_async_only_block() -> None:
    out = convert(
        """\
        def allowance(self) -> int:
            # unasync: async-only
            return self._book.allowance()
            # unasync: sync-only
            # with self._cond:
            #     return self._book.allowance()
            #
            # unasync: end
        """
    )
    assert out == textwrap.dedent(
        """\
        def allowance(self) -> int:
            with self._cond:
                return self._book.allowance()

        """
    )
    with pytest.raises(unasync.UnasyncError, match="must be a comment"):
        convert("# unasync: sync-only\nx = 1\n# unasync: end\n")
