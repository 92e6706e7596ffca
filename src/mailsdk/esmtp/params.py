"""MAIL FROM / RCPT TO parameter builders, checked against the server's capabilities.

Layer: L2 (esmtp). May import ``mailsdk.protocol`` and L0; never ``mailsdk.auth``, L3 and above,
or I/O modules.

Asking for a parameter whose extension the server did not advertise raises
``CapabilityError(extension=...)`` *before* any command is sent, except ``SIZE=``, which is
simply omitted when SIZE is absent (it is only a hint, RFC 1870 §6). Third-party hooks run only
for extensions the server advertised; an option value for one it did not advertise is a
``CapabilityError`` too. Every value is validated:
CR, LF and other control characters never reach the wire (command injection).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Mapping

import attrs

from mailsdk.errors import CapabilityError, ConfigurationError, InvalidInputError
from mailsdk.esmtp.registry import MailParameterHook, RcptParameterHook
from mailsdk.esmtp.xtext import encode_utf8_addr_xtext, encode_xtext

if typing.TYPE_CHECKING:
    from mailsdk.esmtp.capabilities import Capabilities
    from mailsdk.esmtp.registry import Extension, ExtensionRegistry

__all__ = [
    "BodyType",
    "MailOptions",
    "NotifyType",
    "RcptOptions",
    "RetType",
    "mail_parameters",
    "orcpt_value",
    "rcpt_parameters",
    "validate_parameter",
]

BodyType: typing.TypeAlias = typing.Literal["7BIT", "8BITMIME", "BINARYMIME"]
RetType: typing.TypeAlias = typing.Literal["FULL", "HDRS"]
NotifyType: typing.TypeAlias = typing.Literal["NEVER", "SUCCESS", "FAILURE", "DELAY"]

_BODY_VALUES: typing.Final = frozenset({"7BIT", "8BITMIME", "BINARYMIME"})
_RET_VALUES: typing.Final = frozenset({"FULL", "HDRS"})
_NOTIFY_VALUES: typing.Final = ("NEVER", "SUCCESS", "FAILURE", "DELAY")
_CONTROL_RE: typing.Final = re.compile(r"[\x00-\x1f\x7f]")
# RFC 5321 §4.1.2: esmtp-param = esmtp-keyword ["=" esmtp-value];
# esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 non-ASCII per RFC 6531 §3.3.
_PARAM_RE: typing.Final = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9-]*(?:=[\x21-\x3c\x3e-\x7e\u00a0-\ud7ff\ue000-\U0010ffff]+)?"
)
# RFC 3461 §4.4: the ENVID "MUST NOT exceed 100 characters".
_ENVID_MAX: typing.Final = 100


def _no_controls(what: str, value: str) -> None:
    if not isinstance(value, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidInputError(f"{what} must be a str, not {type(value).__name__}")
    if _CONTROL_RE.search(value):
        raise InvalidInputError(f"{what} contains CR, LF or another control character")


def validate_parameter(param: str) -> str:
    """Check one ``KEYWORD[=value]`` parameter (RFC 5321 §4.1.2 ``esmtp-param``).

    Args:
        param: the parameter text, e.g. ``"MT-PRIORITY=3"``.

    Returns:
        ``param`` unchanged.

    Raises:
        InvalidInputError: control characters (CR/LF injection), spaces, a bad keyword or an
            empty/invalid value.
    """
    if not isinstance(param, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidInputError(f"an ESMTP parameter must be a str, not {type(param).__name__}")
    _no_controls("ESMTP parameter", param)
    if _PARAM_RE.fullmatch(param) is None:
        raise InvalidInputError(
            f"invalid ESMTP parameter {param!r}: expected KEYWORD or KEYWORD=value without "
            "spaces (RFC 5321 §4.1.2)"
        )
    return param


def _iterable(what: str, value: object) -> Iterable[object]:
    """``value`` when it can be iterated; a wrong type is a typed refusal, never a TypeError."""
    if isinstance(value, bytes | bytearray | memoryview) or not isinstance(value, Iterable):
        raise InvalidInputError(
            f"{what} must be a str or an iterable of str, not {type(value).__name__}"  # pyright: ignore[reportUnknownArgumentType]
        )
    return typing.cast("Iterable[object]", value)


def _params_tuple(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    return tuple(validate_parameter(typing.cast("str", p)) for p in _iterable("extra", value))


def _no_extensions() -> dict[str, object]:
    return {}


def _extension_map(value: Mapping[str, object]) -> Mapping[str, object]:
    if not isinstance(value, Mapping):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidInputError(
            f"extensions must be a mapping of keyword to value, not {type(value).__name__}"
        )
    return types.MappingProxyType({str(k).upper(): v for k, v in value.items()})


def _check_choice(allowed: frozenset[str]) -> typing.Callable[[object, typing.Any, object], None]:
    def check(instance: object, attribute: typing.Any, value: object) -> None:
        if value is not None and value not in allowed:
            raise InvalidInputError(
                f"{attribute.name}={value!r} is not one of {', '.join(sorted(allowed))}"
            )

    return check


def _check_size(instance: object, attribute: typing.Any, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"size must be a non-negative int, not {value!r}")


def _check_envid(instance: object, attribute: typing.Any, value: str | None) -> None:
    if value is None:
        return
    _no_controls("ENVID", value)
    # RFC 3461 §4.4: printable US-ASCII only, at most 100 characters (before xtext encoding).
    if not value or not value.isascii() or len(value) > _ENVID_MAX:
        raise InvalidInputError(
            f"ENVID must be 1-{_ENVID_MAX} printable US-ASCII characters (RFC 3461 §4.4)"
        )


def _notify_tuple(value: Iterable[str] | None) -> tuple[NotifyType, ...] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(_iterable("NOTIFY", value))
    out: list[NotifyType] = []
    for item in items:
        name = str(item).strip().upper()
        if name not in _NOTIFY_VALUES:
            raise InvalidInputError(
                f"NOTIFY value {item!r} is not one of {', '.join(_NOTIFY_VALUES)} (RFC 3461 §4.1)"
            )
        if name in out:
            raise InvalidInputError(f"NOTIFY value {name} given twice")
        # mypy needs the cast (``name`` is a str); pyright narrows it through the ``in`` test.
        out.append(typing.cast("NotifyType", name))  # pyright: ignore[reportUnnecessaryCast]
    # RFC 3461 §4.1: "NEVER" or a comma-separated list of SUCCESS, FAILURE and DELAY.
    if not out:
        raise InvalidInputError("NOTIFY needs at least one value (RFC 3461 §4.1)")
    if "NEVER" in out and len(out) > 1:
        raise InvalidInputError("NOTIFY=NEVER cannot be combined with other values (RFC 3461 §4.1)")
    return tuple(out)


def _check_orcpt(instance: object, attribute: typing.Any, value: str | None) -> None:
    if value is None:
        return
    _no_controls("ORCPT", value)
    if not value.strip("<> ") or "@" not in value:
        raise InvalidInputError(f"ORCPT {value!r} is not an address")


@attrs.frozen(kw_only=True)
class MailOptions:
    """What to ask for in MAIL FROM (all optional).

    Args:
        size: the message size in octets (``SIZE=``, RFC 1870 §3).
        body: ``"7BIT"``, ``"8BITMIME"`` (RFC 6152) or ``"BINARYMIME"`` (RFC 3030 §3).
        smtputf8: request ``SMTPUTF8`` (RFC 6531 §3.4).
        ret: DSN ``RET=FULL`` or ``RET=HDRS`` (RFC 3461 §4.3).
        envid: DSN envelope id, printable ASCII, sent as ``ENVID=<xtext>`` (RFC 3461 §4.4).
        requiretls: request ``REQUIRETLS`` (RFC 8689 §4.2).
        extra: raw ``KEYWORD[=value]`` parameters appended as given (validated, not checked
            against the capabilities).
        extensions: option values for third-party extensions, keyed by EHLO keyword; the
            extension's :class:`~mailsdk.esmtp.MailParameterHook` reads them.

    Raises:
        InvalidInputError: a value is out of range or contains control characters.
    """

    size: int | None = attrs.field(default=None, validator=_check_size)
    body: BodyType | None = attrs.field(default=None, validator=_check_choice(_BODY_VALUES))
    smtputf8: bool = False
    ret: RetType | None = attrs.field(default=None, validator=_check_choice(_RET_VALUES))
    envid: str | None = attrs.field(default=None, validator=_check_envid)
    requiretls: bool = False
    extra: tuple[str, ...] = attrs.field(default=(), converter=_params_tuple)
    extensions: Mapping[str, object] = attrs.field(
        factory=_no_extensions, converter=_extension_map, hash=False
    )


@attrs.frozen(kw_only=True)
class RcptOptions:
    """What to ask for in RCPT TO (all optional).

    Args:
        notify: DSN ``NOTIFY``: ``("NEVER",)`` or any of ``"SUCCESS"``, ``"FAILURE"``,
            ``"DELAY"`` (RFC 3461 §4.1); a comma-separated string is accepted too.
        orcpt: the original recipient address for DSN ``ORCPT`` (RFC 3461 §4.2).
        extra: raw ``KEYWORD[=value]`` parameters appended as given.
        extensions: option values for third-party extensions, keyed by EHLO keyword.

    Raises:
        InvalidInputError: a value is invalid or contains control characters.
    """

    notify: tuple[NotifyType, ...] | None = attrs.field(default=None, converter=_notify_tuple)
    orcpt: str | None = attrs.field(default=None, validator=_check_orcpt)
    extra: tuple[str, ...] = attrs.field(default=(), converter=_params_tuple)
    extensions: Mapping[str, object] = attrs.field(
        factory=_no_extensions, converter=_extension_map, hash=False
    )


def orcpt_value(address: str) -> str:
    """Return the ``ORCPT`` value for ``address`` (without ``ORCPT=``).

    ASCII addresses use ``rfc822;<xtext>`` (RFC 3461 §4.2); internationalised ones use the
    7-bit ``utf-8;<utf-8-addr-xtext>`` form of RFC 6533 §3, valid for any server.

    Example:
        ``orcpt_value("a+b@example.com")`` returns ``"rfc822;a+2Bb@example.com"``.
    """
    addr = address.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1]
    if addr.isascii():
        return f"rfc822;{encode_xtext(addr)}"
    return f"utf-8;{encode_utf8_addr_xtext(addr)}"


def _hooks(caps: Capabilities, registry: ExtensionRegistry | None) -> tuple[Extension, ...]:
    return tuple(registry) if registry is not None else caps.extensions


# isinstance() against a runtime-checkable Protocol inspects every member on every call and was
# a third of the client's CPU per message; a direct attribute check is equivalent here.
def _is_mail_hook(ext: Extension) -> typing.TypeGuard[MailParameterHook]:
    return callable(getattr(ext, "mail_parameters", None))


def _is_rcpt_hook(ext: Extension) -> typing.TypeGuard[RcptParameterHook]:
    return callable(getattr(ext, "rcpt_parameters", None))


_H = typing.TypeVar("_H", MailParameterHook, RcptParameterHook)


def _advertised(
    hooks: list[_H], caps: Capabilities, wanted: Mapping[str, object], command: str
) -> list[_H]:
    """The hooks whose keyword the server advertised: only those contribute parameters.

    An extension parameter is meaningless (and usually a 555) for a server that never offered
    the extension (RFC 5321 §4.1.1.11); asking for one explicitly is a ``CapabilityError``.
    """
    for hook in hooks:
        if hook.keyword in wanted and not caps.has(hook.keyword):
            raise CapabilityError(
                f"{command} option {hook.keyword} was given but the server does not offer "
                f"{hook.keyword}",
                extension=hook.keyword,
            )
    return [h for h in hooks if caps.has(h.keyword)]


def _finish(
    built: list[str],
    *,
    contributed: Iterable[tuple[str, Iterable[str]]],
    claimed: set[str],
    wanted: Mapping[str, object],
    extra: tuple[str, ...],
    command: str,
) -> tuple[str, ...]:
    for keyword, params in contributed:
        if isinstance(params, str):
            params = (params,)
        for param in params:
            try:
                built.append(validate_parameter(param))
            except InvalidInputError as exc:
                raise InvalidInputError(f"extension {keyword}: {exc}") from exc
    unclaimed = sorted(set(wanted) - claimed)
    if unclaimed:
        raise ConfigurationError(
            f"no registered extension builds {command} parameters for option(s) "
            f"{', '.join(unclaimed)}"
        )
    built.extend(extra)
    seen: set[str] = set()
    for param in built:
        name = param.split("=", 1)[0].upper()
        if name in seen:
            raise InvalidInputError(f"{command} parameter {name} would be sent twice")
        seen.add(name)
    return tuple(built)


def mail_parameters(
    options: MailOptions, caps: Capabilities, *, registry: ExtensionRegistry | None = None
) -> tuple[str, ...]:
    """Build the MAIL FROM parameters for ``options`` (RFC 5321 §4.1.1.2).

    Order: SIZE, BODY, SMTPUTF8, RET, ENVID, REQUIRETLS, third-party hooks (registry order),
    then ``options.extra``.

    Wire::

        C: MAIL FROM:<a@example.com> SIZE=1234 BODY=8BITMIME RET=HDRS ENVID=QQ314159

    Args:
        options: what to ask for.
        caps: the server's capabilities.
        registry: extensions whose hooks run; default: those that parsed ``caps``.

    Returns:
        The parameters, e.g. ``("SIZE=1234", "BODY=8BITMIME")``.

    Raises:
        CapabilityError: the server lacks a needed extension (``.extension`` names it), or the
            size exceeds the advertised SIZE limit (RFC 1870 §6).
        InvalidInputError: an invalid or duplicated parameter.
        ConfigurationError: ``options.extensions`` holds a value no registered hook handles.
    """
    built: list[str] = []
    if options.size is not None and caps.has("SIZE"):
        limit = caps.max_size
        if limit is not None and options.size > limit:
            raise CapabilityError(
                f"message size {options.size} exceeds the server's SIZE limit of {limit} "
                "octets (RFC 1870)",
                extension="SIZE",
            )
        built.append(f"SIZE={options.size}")
    if options.body == "8BITMIME":
        caps.require("8BITMIME", purpose="BODY=8BITMIME")
        built.append("BODY=8BITMIME")
    elif options.body == "BINARYMIME":
        # RFC 3030 §3: BINARYMIME content can only be sent with BDAT (CHUNKING).
        caps.require("BINARYMIME", purpose="BODY=BINARYMIME")
        caps.require("CHUNKING", purpose="BODY=BINARYMIME")
        built.append("BODY=BINARYMIME")
    elif options.body == "7BIT" and (caps.eightbitmime or caps.binarymime):
        # BODY= exists only with 8BITMIME (RFC 6152 §2); 7BIT is the default otherwise.
        built.append("BODY=7BIT")
    if options.smtputf8:
        caps.require("SMTPUTF8", purpose="SMTPUTF8")
        built.append("SMTPUTF8")
    if options.ret is not None:
        caps.require("DSN", purpose="RET=")
        built.append(f"RET={options.ret}")
    if options.envid is not None:
        caps.require("DSN", purpose="ENVID=")
        built.append(f"ENVID={encode_xtext(options.envid)}")
    if options.requiretls:
        caps.require("REQUIRETLS", purpose="REQUIRETLS")
        built.append("REQUIRETLS")

    hooks = [e for e in _hooks(caps, registry) if _is_mail_hook(e)]
    advertised = _advertised(hooks, caps, options.extensions, "MAIL")
    contributed = ((h.keyword, h.mail_parameters(options, caps)) for h in advertised)
    claimed = {h.keyword for h in hooks}
    return _finish(
        built,
        contributed=contributed,
        claimed=claimed,
        wanted=options.extensions,
        extra=options.extra,
        command="MAIL",
    )


def rcpt_parameters(
    options: RcptOptions, caps: Capabilities, *, registry: ExtensionRegistry | None = None
) -> tuple[str, ...]:
    """Build the RCPT TO parameters for ``options`` (RFC 5321 §4.1.1.3).

    Order: NOTIFY, ORCPT, third-party hooks (registry order), then ``options.extra``.

    Wire::

        C: RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.org

    Args:
        options: what to ask for.
        caps: the server's capabilities.
        registry: extensions whose hooks run; default: those that parsed ``caps``.

    Returns:
        The parameters.

    Raises:
        CapabilityError: NOTIFY/ORCPT without DSN (``extension="DSN"``), or a hook's refusal.
        InvalidInputError: an invalid or duplicated parameter.
        ConfigurationError: ``options.extensions`` holds a value no registered hook handles.
    """
    built: list[str] = []
    if options.notify is not None:
        caps.require("DSN", purpose="NOTIFY=")
        built.append("NOTIFY=" + ",".join(options.notify))
    if options.orcpt is not None:
        caps.require("DSN", purpose="ORCPT=")
        built.append(f"ORCPT={orcpt_value(options.orcpt)}")

    hooks = [e for e in _hooks(caps, registry) if _is_rcpt_hook(e)]
    advertised = _advertised(hooks, caps, options.extensions, "RCPT")
    contributed = ((h.keyword, h.rcpt_parameters(options, caps)) for h in advertised)
    claimed = {h.keyword for h in hooks}
    return _finish(
        built,
        contributed=contributed,
        claimed=claimed,
        wanted=options.extensions,
        extra=options.extra,
        command="RCPT",
    )
