"""The ESMTP extension seam: the ``Extension`` protocol, its optional hooks and the registry.

Layer: L2 (esmtp). May import ``mailsdk.protocol`` and L0; never ``mailsdk.auth``, L3 and above,
or I/O modules of the standard library (``importlib.metadata`` is used only by the opt-in
:meth:`ExtensionRegistry.load_entry_points`).

An extension is any object with a ``keyword`` and a ``parse(params)`` method (RFC 5321 §4.1.1.1:
each EHLO line after the first is ``ehlo-keyword *( SP ehlo-param )``). It may also contribute
MAIL FROM / RCPT TO parameters by implementing :class:`MailParameterHook` /
:class:`RcptParameterHook`; :func:`mailsdk.esmtp.mail_parameters` calls those hooks in
registration order.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable, Iterator

from mailsdk.errors import ConfigurationError

if typing.TYPE_CHECKING:
    from mailsdk.esmtp.capabilities import Capabilities
    from mailsdk.esmtp.params import MailOptions, RcptOptions

__all__ = [
    "DEFAULT_ENTRY_POINT_GROUP",
    "Extension",
    "ExtensionRegistry",
    "MailParameterHook",
    "RcptParameterHook",
    "is_ehlo_keyword",
]

#: The entry-point group scanned by :meth:`ExtensionRegistry.load_entry_points`.
DEFAULT_ENTRY_POINT_GROUP: typing.Final = "mailsdk.esmtp"

# RFC 5321 §4.1.1.1: ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
_KEYWORD_RE: typing.Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


def is_ehlo_keyword(text: str) -> bool:
    """Return True when ``text`` is a syntactically valid EHLO keyword (RFC 5321 §4.1.1.1)."""
    return text.isascii() and _KEYWORD_RE.fullmatch(text) is not None


@typing.runtime_checkable
class Extension(typing.Protocol):
    """An ESMTP service extension known to the client.

    ``parse`` turns the parameters the server advertised after the keyword into the value
    :meth:`Capabilities.get` returns. It should be lenient: servers send odd things. An
    extension that cannot make sense of the parameters raises ``ValueError`` (or any
    ``mailsdk.errors.MailError``); the keyword then stays advertised (``caps.has()`` is True,
    ``caps.raw`` keeps the text) but has no value and is listed in ``caps.unparsed``. Any other
    exception is a bug in the extension and propagates.
    """

    @property
    def keyword(self) -> str:
        """The upper-case EHLO keyword, e.g. ``"SIZE"``."""
        ...

    def parse(self, params: str) -> object:
        """Parse the advertised parameters.

        Args:
            params: the text after the keyword, stripped (``""`` when there is none). When the
                server repeats the keyword, the parameters of every occurrence are joined
                with a single space.

        Returns:
            The value stored in the capabilities for this keyword.
        """
        ...


@typing.runtime_checkable
class MailParameterHook(Extension, typing.Protocol):
    """An extension that contributes MAIL FROM parameters (RFC 5321 §4.1.1.2 ``Mail-parameters``).

    The hook reads its own option value from ``options.extensions[self.keyword]`` (or anything
    else in ``options``) and returns the parameters to add, e.g. ``("MT-PRIORITY=3",)``. It is
    called only when the server advertised ``self.keyword``: a value in ``options.extensions``
    for an extension the server lacks raises ``CapabilityError(extension=keyword)`` before any
    command is sent, and without a value nothing is added. Returned parameters are validated
    (RFC 5321 §4.1.2 ``esmtp-param``) before use.
    """

    def mail_parameters(self, options: MailOptions, caps: Capabilities) -> Iterable[str]:
        """Return the MAIL FROM parameters this extension contributes (maybe none)."""
        ...


@typing.runtime_checkable
class RcptParameterHook(Extension, typing.Protocol):
    """An extension that contributes RCPT TO parameters (RFC 5321 §4.1.1.3 ``Rcpt-parameters``).

    Same rules as :class:`MailParameterHook`, with ``options.extensions`` of the
    :class:`~mailsdk.esmtp.params.RcptOptions`.
    """

    def rcpt_parameters(self, options: RcptOptions, caps: Capabilities) -> Iterable[str]:
        """Return the RCPT TO parameters this extension contributes (maybe none)."""
        ...


def _check_extension(obj: object) -> Extension:
    """Validate that ``obj`` looks like an :class:`Extension` and return it."""
    keyword = getattr(obj, "keyword", None)
    if not isinstance(keyword, str) or not callable(getattr(obj, "parse", None)):
        raise ConfigurationError(
            f"{obj!r} is not an ESMTP extension: it needs a str 'keyword' and a 'parse' method"
        )
    if not is_ehlo_keyword(keyword) or keyword != keyword.upper():
        raise ConfigurationError(
            f"invalid extension keyword {keyword!r}: must be an upper-case EHLO keyword "
            "(RFC 5321 §4.1.1.1)"
        )
    return typing.cast("Extension", obj)


class ExtensionRegistry:
    """Keyword → :class:`Extension` map used to parse EHLO replies and build parameters.

    Iteration yields the extensions in registration order (which is also the order of the
    parameters they contribute). A registry is mutable; :class:`Capabilities` keep a snapshot
    of the extensions that parsed them, so later changes never affect parsed capabilities.

    Args:
        extensions: extensions to register, in order.
    """

    def __init__(self, extensions: Iterable[Extension] = ()) -> None:
        self._extensions: dict[str, Extension] = {}
        for extension in extensions:
            self.register(extension)

    @classmethod
    def default(cls) -> ExtensionRegistry:
        """Return a fresh registry holding the built-in extensions (see ``builtin.py``).

        Returns:
            A new registry; changing it never affects other registries.
        """
        from mailsdk.esmtp.builtin import builtin_extensions

        return cls(builtin_extensions())

    def register(self, extension: Extension, *, replace: bool = False) -> None:
        """Add an extension.

        Args:
            extension: the extension object.
            replace: allow replacing an extension already registered for the same keyword
                (e.g. a better parser for a built-in). The replacement keeps the old position.

        Raises:
            ConfigurationError: the object is not an extension, its keyword is not an upper-case
                RFC 5321 §4.1.1.1 keyword, or the keyword is taken and ``replace`` is False.
        """
        ext = _check_extension(extension)
        if ext.keyword in self._extensions and not replace:
            raise ConfigurationError(
                f"an extension for {ext.keyword!r} is already registered "
                "(pass replace=True to override it)"
            )
        self._extensions[ext.keyword] = ext

    def unregister(self, keyword: str) -> None:
        """Remove the extension registered for ``keyword``.

        Raises:
            ConfigurationError: nothing is registered for ``keyword``.
        """
        try:
            del self._extensions[keyword.upper()]
        except KeyError:
            raise ConfigurationError(f"no extension registered for {keyword!r}") from None

    def get(self, keyword: str) -> Extension | None:
        """Return the extension for ``keyword`` (case-insensitive), or ``None``."""
        return self._extensions.get(keyword.upper())

    def keywords(self) -> tuple[str, ...]:
        """Return the registered keywords in registration order."""
        return tuple(self._extensions)

    def copy(self) -> ExtensionRegistry:
        """Return an independent registry with the same extensions."""
        return ExtensionRegistry(self._extensions.values())

    def load_entry_points(self, group: str = DEFAULT_ENTRY_POINT_GROUP) -> tuple[str, ...]:
        """Register the extensions that installed distributions publish as entry points (opt-in).

        Each entry point may name an extension object, an extension class (instantiated with
        no arguments) or a zero-argument factory returning an extension. Entry points whose
        keyword is already registered are skipped (explicit registrations win).

        Args:
            group: the entry-point group, ``"mailsdk.esmtp"`` by default.

        Returns:
            The keywords newly registered, in load order.

        Raises:
            ConfigurationError: an entry point failed to import or did not produce an extension.
        """
        import importlib.metadata

        added: list[str] = []
        for entry_point in importlib.metadata.entry_points(group=group):
            try:
                loaded = entry_point.load()
                if isinstance(loaded, type) or not hasattr(loaded, "parse"):
                    loaded = loaded()
            except Exception as exc:
                raise ConfigurationError(
                    f"ESMTP extension entry point {entry_point.name!r} ({entry_point.value}) "
                    f"failed to load: {type(exc).__name__}: {exc}"
                ) from exc
            ext = _check_extension(loaded)
            if ext.keyword in self._extensions:
                continue
            self._extensions[ext.keyword] = ext
            added.append(ext.keyword)
        return tuple(added)

    def __contains__(self, keyword: object) -> bool:
        return isinstance(keyword, str) and keyword.upper() in self._extensions

    def __iter__(self) -> Iterator[Extension]:
        return iter(tuple(self._extensions.values()))

    def __len__(self) -> int:
        return len(self._extensions)

    def __repr__(self) -> str:
        return f"ExtensionRegistry({list(self._extensions)!r})"
