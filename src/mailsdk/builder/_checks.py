"""Argument checks of the ``ClientBuilder.with_*`` methods: a wrong type is refused at the call.

Layer: L6 composition (private). Without these a wrong type was stored as given and failed
later (a bare ``TypeError``/``AttributeError`` in a send) or did something else than asked
(``with_lmtp("no")`` is truthy). Messages name the method, the parameter and what it expects,
and show only the type of what was given: the value may be a secret.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping, Sequence

from mailsdk._secret import Secret
from mailsdk.errors import ConfigurationError

__all__ = [
    "expect",
    "expect_bool",
    "expect_mechanisms",
    "expect_method",
    "expect_otel_options",
    "expect_port",
    "expect_str",
    "expect_token_provider",
    "refused",
]

#: Values whose ``repr`` is safe and clearer than their type name.
_SHOWN: typing.Final = (bool, type(None), int, float)


def _given(value: object, shown: bool) -> str:
    if shown and isinstance(value, _SHOWN):
        return repr(value)
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def refused(
    method: str, param: str, expected: str, value: object, *, shown: bool = True
) -> ConfigurationError:
    """The error for ``method``'s ``param``: what it expects and what it got (a bool, None or
    a number as such, anything else by its type; ``shown=False``: always by its type, for a
    parameter that holds a secret)."""
    return ConfigurationError(
        f"ClientBuilder.{method}: {param} must be {expected}, not {_given(value, shown)}"
    )


def expect(
    method: str,
    param: str,
    value: object,
    kind: type | tuple[type, ...],
    expected: str,
    *,
    shown: bool = True,
) -> None:
    """``value`` is an instance of ``kind`` (a runtime-checkable protocol works too); a bool
    never passes for a number."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise refused(method, param, expected, value, shown=shown)


def expect_bool(method: str, param: str, value: object) -> None:
    """``value`` is ``True`` or ``False`` (not a truthy string or number)."""
    if not isinstance(value, bool):
        raise refused(method, param, "True or False", value)


def expect_str(method: str, param: str, value: object, *, optional: bool = False) -> None:
    """``value`` is a non-empty ``str`` (or ``None`` when ``optional``)."""
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        expected = "a non-empty str" + (" or None" if optional else "")
        raise refused(method, param, expected, value)


def expect_port(method: str, param: str, value: object) -> None:
    """``value`` is an ``int`` port from 0 to 65535 (not a bool, not a str)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise refused(method, param, "an int from 0 to 65535", value)


def expect_method(
    method: str, param: str, value: object, name: str, expected: str, *, shown: bool = True
) -> None:
    """``value`` has a callable ``name`` (a structural protocol with one entry point)."""
    if not callable(getattr(value, name, None)):
        raise refused(method, param, expected, value, shown=shown)


def expect_token_provider(method: str, value: object) -> None:
    """A token provider, not a token string (which is never shown: it is the token)."""
    if isinstance(value, str | Secret):
        expected = "a token provider (wrap a fixed token in mailsdk.auth.StaticTokenProvider)"
        raise refused(method, "provider", expected, value, shown=False)
    expected = "a TokenProvider (with get_token())"
    expect_method(method, "provider", value, "get_token", expected, shown=False)


def expect_mechanisms(method: str, mechanisms: object, *, optional: bool) -> None:
    """Mechanism names: a sequence of non-empty ``str`` (one ``str`` is one name)."""
    if mechanisms is None and optional:
        return
    if isinstance(mechanisms, str):
        names: list[object] = [mechanisms]
    elif isinstance(mechanisms, Sequence):
        names = list(typing.cast("Sequence[object]", mechanisms))
    else:
        names = [None]
    if not all(isinstance(n, str) and n for n in names):
        expected = "a sequence of mechanism names (str)" + (" or None" if optional else "")
        raise refused(method, "mechanisms", expected, mechanisms)  # pyright: ignore[reportUnknownArgumentType]


def expect_otel_options(method: str, options: Mapping[str, object]) -> None:
    """The keyword arguments of ``OpenTelemetryInstrumentation`` whose type is easy to get wrong
    (``record_addresses="no"`` would record them)."""
    for flag in ("record_addresses", "propagate"):
        if flag in options:
            expect_bool(method, flag, options[flag])
    verbs = options.get("extra_verbs", ())
    if isinstance(verbs, str) or not isinstance(verbs, Iterable):
        raise refused(method, "extra_verbs", "an iterable of verb names", verbs)
    if "clock" in options and not callable(options["clock"]):
        raise refused(method, "clock", "a callable returning seconds", options["clock"])
