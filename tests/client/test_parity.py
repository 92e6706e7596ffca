"""The blocking and asyncio facades expose the same names with the same signatures.

``Client`` ↔ ``AsyncClient`` and ``Session`` ↔ ``AsyncSession``: every public method of one
exists on the other with an identical signature; the async ones are coroutine functions
(``send_many`` returns an iterator, its twin an asynchronous iterator);
``close`` ↔ ``aclose`` and ``__enter__/__exit__`` ↔ ``__aenter__/__aexit__`` are the only
renames (docs/architecture.md, "Decisions").
"""

from __future__ import annotations

import inspect

import pytest

from mailsdk import AsyncClient, AsyncLMTPClient, AsyncSession, Client, LMTPClient, Session

RENAMES = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}
#: Plain functions in both facades: they build an (async) context manager, e.g. ``pool``.
FACTORIES = {"pool"}
#: Methods returning an iterator: the async twin returns an async iterator (a plain function,
#: not a coroutine) and also accepts asynchronous input.
ITERATORS = {"send_many"}
PAIRS = [(Client, AsyncClient), (Session, AsyncSession), (LMTPClient, AsyncLMTPClient)]


def public_members(cls: type) -> dict[str, object]:
    names = {n for n in dir(cls) if not n.startswith("_")} | {
        n for n in ("__enter__", "__exit__", "__aenter__", "__aexit__") if hasattr(cls, n)
    }
    return {n: inspect.getattr_static(cls, n) for n in names}


def normalised(sig: inspect.Signature, cls: type) -> str:
    text = str(sig)
    return text.replace(cls.__name__, "<Self>").replace("Async", "")


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS, ids=lambda c: c.__name__)
def test_same_public_names(sync_cls: type, async_cls: type) -> None:
    sync_names = {RENAMES.get(n, n) for n in public_members(sync_cls)}
    assert sync_names == set(public_members(async_cls))


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS, ids=lambda c: c.__name__)
def test_same_signatures_and_async_methods_are_coroutines(sync_cls: type, async_cls: type) -> None:
    sync_members = public_members(sync_cls)
    async_members = public_members(async_cls)
    checked = 0
    for name, member in sync_members.items():
        twin = async_members[RENAMES.get(name, name)]
        if isinstance(member, property):
            assert isinstance(twin, property), name
            assert inspect.signature(member.fget) == inspect.signature(twin.fget), name  # type: ignore[arg-type]
            continue
        if not callable(member):
            continue
        sync_fn = getattr(sync_cls, name)
        async_fn = getattr(async_cls, RENAMES.get(name, name))
        if name in FACTORIES:
            assert not inspect.iscoroutinefunction(sync_fn), name
            assert not inspect.iscoroutinefunction(async_fn), name
            sync_params = inspect.signature(sync_fn).parameters.values()
            async_params = inspect.signature(async_fn).parameters.values()
            assert [(p.name, p.kind, p.default) for p in sync_params] == [
                (p.name, p.kind, p.default) for p in async_params
            ], name
            continue
        if name in ITERATORS:
            assert not inspect.iscoroutinefunction(async_fn), name
            sync_sig, async_sig = inspect.signature(sync_fn), inspect.signature(async_fn)
            assert list(sync_sig.parameters) == list(async_sig.parameters), name
            assert str(async_sig.return_annotation) == "Async" + str(sync_sig.return_annotation)
            checked += 1
            continue
        if isinstance(member, classmethod | staticmethod):
            assert not inspect.iscoroutinefunction(async_fn), name
        else:
            assert not inspect.iscoroutinefunction(sync_fn), name
            assert inspect.iscoroutinefunction(async_fn), name
        sync_sig = inspect.signature(sync_fn)
        async_sig = inspect.signature(async_fn)
        assert list(sync_sig.parameters) == list(async_sig.parameters), name
        for p_sync, p_async in zip(
            sync_sig.parameters.values(), async_sig.parameters.values(), strict=True
        ):
            assert p_sync.kind == p_async.kind, (name, p_sync.name)
            assert p_sync.default == p_async.default, (name, p_sync.name)
            assert normalised(inspect.Signature([p_sync]), sync_cls) == normalised(
                inspect.Signature([p_async]), async_cls
            ), (name, p_sync.name)
        assert (
            normalised(sync_sig, sync_cls).split(" -> ")[-1]
            == normalised(async_sig, async_cls).split(" -> ")[-1]
        ), name
        checked += 1
    assert checked >= 3


def test_every_public_session_method_has_a_docstring() -> None:
    for cls in (Client, AsyncClient, Session, AsyncSession):
        for name, member in public_members(cls).items():
            if name.startswith("__"):
                continue
            doc = (
                member.fget.__doc__
                if isinstance(member, property)
                else getattr(member, "__doc__", None)
            )
            assert doc, f"{cls.__name__}.{name}"
