"""MechanismRegistry: name → mechanism, default preferences, and the selection policy.

Layer: L2 (auth, pure). May import ``mailsdk.errors``, the sibling pure auth modules and (lazily,
for the opt-in discovery only) ``importlib.metadata``. Must never import ``mailsdk.protocol``/
``esmtp``/``flows`` or any I/O module.

Selection (:meth:`MechanismRegistry.select`) is the one place where these rules live:

* the caller's preference (or the registry's default for the credential kind), in order,
  intersected with what the server advertised (case-insensitive; RFC 4954 §3 AUTH keyword);
* the mechanism must take the kind of credential we hold (password vs token);
* a mechanism that sends a reusable secret (PLAIN, LOGIN, XOAUTH2, OAUTHBEARER) is refused on an
  unencrypted connection unless ``allow_plaintext`` (RFC 4954 §4, RFC 4616 §6);
* a ``-PLUS`` mechanism needs channel binding from the transport (RFC 5056);
* nothing left → :class:`~mailsdk.errors.AuthError` naming our list and the server's.
"""

from __future__ import annotations

import typing

from mailsdk.auth.base import CredentialKind, Mechanism
from mailsdk.auth.cram_md5 import CramMD5Mechanism
from mailsdk.auth.login import LoginMechanism
from mailsdk.auth.oauth import OAuthBearerMechanism, XOAuth2Mechanism
from mailsdk.auth.plain import PlainMechanism
from mailsdk.auth.scram import ScramMechanism
from mailsdk.errors import AuthError, ConfigurationError

if typing.TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "DEFAULT_PASSWORD_PREFERENCE",
    "DEFAULT_TOKEN_PREFERENCE",
    "ENTRY_POINT_GROUP",
    "MechanismRegistry",
    "requires_channel_binding",
]

#: Entry-point group scanned by :meth:`MechanismRegistry.load_entry_points`.
ENTRY_POINT_GROUP: typing.Final = "mailsdk.sasl"

#: Strongest first. CRAM-MD5 is registered but absent: it is used only when asked for.
DEFAULT_PASSWORD_PREFERENCE: typing.Final = (
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-1",
    "PLAIN",
    "LOGIN",
)
#: XOAUTH2 first: Office 365 and Gmail speak it; OAUTHBEARER (RFC 7628) next.
DEFAULT_TOKEN_PREFERENCE: typing.Final = ("XOAUTH2", "OAUTHBEARER")


def requires_channel_binding(mechanism: Mechanism) -> bool:
    """Whether ``mechanism`` needs TLS channel binding.

    A mechanism may say so with a ``requires_channel_binding`` attribute; otherwise the RFC 5056
    naming convention applies: names ending in ``-PLUS``.
    """
    explicit = getattr(mechanism, "requires_channel_binding", None)
    if isinstance(explicit, bool):
        return explicit
    return mechanism.name.upper().endswith("-PLUS")


def _builtins() -> tuple[Mechanism, ...]:
    # The built-ins declare credential_kind & co. as class-level constants, which pyright does
    # not match against the protocol's read-only properties (mypy does); they are Mechanisms.
    return typing.cast(
        "tuple[Mechanism, ...]",
        (
            ScramMechanism("SHA-256", channel_binding=True),
            ScramMechanism("SHA-256"),
            ScramMechanism("SHA-1", channel_binding=True),
            ScramMechanism("SHA-1"),
            PlainMechanism(),
            LoginMechanism(),
            XOAuth2Mechanism(),
            OAuthBearerMechanism(),
            CramMD5Mechanism(),
        ),
    )


class MechanismRegistry:
    """The mechanisms a client may use, and the default order it tries them in.

    ``MechanismRegistry()`` is empty; :meth:`default` returns a fresh registry with the built-ins.
    Registries are plain mutable objects: copy one (:meth:`copy`) before changing a shared one.

    Args:
        mechanisms: mechanisms to register, in order.
    """

    def __init__(self, mechanisms: Iterable[Mechanism] = ()) -> None:
        self._mechanisms: dict[str, Mechanism] = {}
        self._preference: dict[CredentialKind, list[str]] = {kind: [] for kind in CredentialKind}
        for mechanism in mechanisms:
            self.register(mechanism)

    @classmethod
    def default(cls) -> MechanismRegistry:
        """Return a new registry holding every built-in mechanism and the default preferences.

        Built-ins: SCRAM-SHA-256(-PLUS), SCRAM-SHA-1(-PLUS), PLAIN, LOGIN, XOAUTH2, OAUTHBEARER,
        and CRAM-MD5 (registered, but not in the default preference).
        """
        registry = cls()
        for mechanism in _builtins():
            registry.register(mechanism, in_default_preference=False)
        registry._preference[CredentialKind.PASSWORD] = list(DEFAULT_PASSWORD_PREFERENCE)
        registry._preference[CredentialKind.TOKEN] = list(DEFAULT_TOKEN_PREFERENCE)
        return registry

    def copy(self) -> MechanismRegistry:
        """Return an independent copy (mechanisms are shared; they are stateless)."""
        new = type(self)()
        new._mechanisms = dict(self._mechanisms)
        new._preference = {kind: list(names) for kind, names in self._preference.items()}
        return new

    def register(
        self,
        mechanism: Mechanism,
        *,
        replace: bool = False,
        in_default_preference: bool = True,
        position: int | None = None,
    ) -> None:
        """Add a mechanism (a built-in or a third-party one).

        Args:
            mechanism: an object satisfying the :class:`~mailsdk.auth.Mechanism` protocol.
            replace: allow replacing a mechanism already registered under the same name.
            in_default_preference: also add it to the default preference for its credential
                kind, so :meth:`select` tries it without an explicit ``preference``.
            position: where in that default preference (``None`` = last, i.e. weakest).

        Raises:
            ConfigurationError: the object is not a mechanism, or the name is taken and
                ``replace`` is false.
        """
        candidate: object = mechanism
        if (
            isinstance(candidate, type)
            or not isinstance(candidate, Mechanism)  # pyright: ignore[reportUnnecessaryIsInstance]
            or not isinstance(getattr(mechanism, "name", None), str)
        ):
            raise ConfigurationError(f"not a SASL mechanism: {type(mechanism).__name__}")
        if not isinstance(mechanism.credential_kind, CredentialKind):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigurationError(f"{mechanism.name}: credential_kind must be a CredentialKind")
        key = mechanism.name.upper()
        if key in self._mechanisms and not replace:
            raise ConfigurationError(f"SASL mechanism {key} is already registered")
        old = self._mechanisms.get(key)
        if old is not None:
            for names in self._preference.values():
                if key in names and old.credential_kind is not mechanism.credential_kind:
                    names.remove(key)
        self._mechanisms[key] = mechanism
        if in_default_preference:
            names = self._preference[mechanism.credential_kind]
            if key in names:
                names.remove(key)
            names.insert(len(names) if position is None else position, key)

    def unregister(self, name: str) -> None:
        """Remove a mechanism and drop it from the default preferences (no error if absent)."""
        key = name.upper()
        self._mechanisms.pop(key, None)
        for names in self._preference.values():
            if key in names:
                names.remove(key)

    def get(self, name: str) -> Mechanism | None:
        """Return the mechanism registered as ``name`` (case-insensitive), or ``None``."""
        return self._mechanisms.get(name.upper())

    def require(self, name: str) -> Mechanism:
        """Return the mechanism registered as ``name``.

        Raises:
            AuthError: no such mechanism is registered.
        """
        mechanism = self.get(name)
        if mechanism is None:
            raise AuthError(f"SASL mechanism {name.upper()} is not registered")
        return mechanism

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.upper() in self._mechanisms

    def names(self) -> tuple[str, ...]:
        """Every registered name, upper case, in registration order."""
        return tuple(self._mechanisms)

    def default_preference(self, kind: CredentialKind) -> tuple[str, ...]:
        """The order :meth:`select` uses for ``kind`` when the caller gives none."""
        return tuple(self._preference[kind])

    def check_preference(self, preference: Sequence[str], kind: CredentialKind) -> None:
        """Check that every name in ``preference`` is a registered mechanism for ``kind``.

        Called when the preference is configured, so that a typo fails at once rather than as
        "no usable mechanism" against some server later.

        Raises:
            ConfigurationError: an empty preference, a name that is no str, an unknown name (the
                message lists the registered ones), or a mechanism for another credential.
        """
        if not preference:
            raise ConfigurationError("mechanisms= is empty: give at least one name, or None")
        for name in preference:
            if not isinstance(name, str):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise ConfigurationError(f"a SASL mechanism name must be a str, not {name!r}")
            mechanism = self._mechanisms.get(name.upper())
            if mechanism is None:
                known = ", ".join(sorted(self._mechanisms)) or "none"
                raise ConfigurationError(
                    f"unknown SASL mechanism {name!r} in mechanisms= (registered: {known}; "
                    "register others with ClientBuilder.with_mechanism)"
                )
            if mechanism.credential_kind is not kind:
                raise ConfigurationError(
                    f"SASL mechanism {name.upper()} needs a {mechanism.credential_kind.value}, "
                    f"but the credential is a {kind.value}"
                )

    def select(
        self,
        offered: Sequence[str],
        *,
        kind: CredentialKind,
        preference: Sequence[str] | None = None,
        tls_active: bool,
        allow_plaintext: bool = False,
        channel_binding_available: bool = False,
    ) -> Mechanism:
        """Pick the first mechanism of our preference that the server offers and policy allows.

        Args:
            offered: the server's mechanisms (EHLO ``AUTH`` merged with legacy ``AUTH=``).
            kind: the credential we hold.
            preference: our order, strongest first; ``None`` = :meth:`default_preference`.
            tls_active: whether the connection is encrypted.
            allow_plaintext: permit secret-revealing mechanisms without TLS (RFC 4954 §4 warns).
            channel_binding_available: whether the transport can provide channel binding.

        Returns:
            The chosen mechanism; call its ``start()``.

        Raises:
            AuthError: nothing usable in common; the message names both lists and why each
                candidate was skipped.
        """
        if preference is None:
            preference = self.default_preference(kind)
        ours = tuple(n.upper() for n in preference)
        theirs = tuple(str(n).upper() for n in offered)
        offered_set = set(theirs)
        skipped: list[str] = []
        for name in ours:
            if name not in offered_set:
                continue
            mechanism = self._mechanisms.get(name)
            if mechanism is None:
                skipped.append(f"{name} (not registered)")
            elif mechanism.credential_kind is not kind:
                skipped.append(f"{name} (needs a {mechanism.credential_kind.value})")
            elif mechanism.sends_reusable_secret and not tls_active and not allow_plaintext:
                skipped.append(f"{name} (would reveal the {kind.value} without TLS)")
            elif requires_channel_binding(mechanism) and not channel_binding_available:
                skipped.append(f"{name} (no TLS channel binding available)")
            else:
                return mechanism
        why = f"; skipped: {', '.join(skipped)}" if skipped else ""
        raise AuthError(
            f"no usable SASL mechanism for a {kind.value}: "
            f"our preference is {', '.join(ours) or '-'}; "
            f"the server offers {', '.join(theirs) or 'nothing'}{why}"
        )

    def load_entry_points(
        self, group: str = ENTRY_POINT_GROUP, *, replace: bool = False
    ) -> tuple[str, ...]:
        """Register the mechanisms advertised by installed packages (opt-in discovery).

        Each entry point in ``group`` may name a mechanism object, a zero-argument factory (such
        as the mechanism class) returning one, or a factory returning several.

        Args:
            group: the entry-point group.
            replace: allow plugins to replace already registered names (off: a plugin cannot
                silently swap out PLAIN).

        Returns:
            The names registered, in order.

        Raises:
            ConfigurationError: an entry point failed to load or produced no mechanism.
        """
        from importlib.metadata import entry_points

        added: list[str] = []
        for entry in entry_points(group=group):
            try:
                loaded: object = entry.load()
                if isinstance(loaded, type) or (
                    not isinstance(loaded, Mechanism) and callable(loaded)
                ):
                    loaded = loaded()
            except Exception as exc:
                raise ConfigurationError(
                    f"SASL entry point {entry.name!r} ({entry.value}) failed to load: "
                    f"{type(exc).__name__}"
                ) from exc
            candidates = [loaded] if isinstance(loaded, Mechanism) else loaded
            if not isinstance(candidates, list | tuple) or not candidates:
                raise ConfigurationError(
                    f"SASL entry point {entry.name!r} did not produce a mechanism"
                )
            # register() checks each candidate is a Mechanism (ConfigurationError otherwise).
            for mechanism in typing.cast("list[Mechanism] | tuple[Mechanism, ...]", candidates):
                self.register(mechanism, replace=replace)
                added.append(mechanism.name.upper())
        return tuple(added)

    def __repr__(self) -> str:
        return f"<MechanismRegistry {', '.join(self._mechanisms)}>"
