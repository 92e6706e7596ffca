from __future__ import annotations

import textwrap
import typing
from pathlib import Path

import attrs
import pytest

from mailsdk.auth import (
    DEFAULT_PASSWORD_PREFERENCE,
    DEFAULT_TOKEN_PREFERENCE,
    BaseExchange,
    CredentialKind,
    Mechanism,
    MechanismRegistry,
    PlainMechanism,
    SaslContext,
    SaslCredentials,
    ScramMechanism,
    requires_channel_binding,
)
from mailsdk.errors import AuthError, ConfigurationError

PASSWORD = CredentialKind.PASSWORD
TOKEN = CredentialKind.TOKEN
EVERYTHING = (
    "PLAIN",
    "LOGIN",
    "CRAM-MD5",
    "SCRAM-SHA-1",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-256",
    "SCRAM-SHA-256-PLUS",
    "XOAUTH2",
    "OAUTHBEARER",
)


@attrs.frozen
class External:
    """A third-party mechanism, as a plugin would write it."""

    name: str = "X-EXTERNAL"
    credential_kind: CredentialKind = CredentialKind.PASSWORD
    sends_reusable_secret: bool = False
    supports_initial_response: bool = False

    def start(self, credentials: SaslCredentials, context: SaslContext) -> BaseExchange:
        return BaseExchange(self.name)


def pick(offered: typing.Sequence[str], kind: CredentialKind = PASSWORD, **kw: typing.Any) -> str:
    kw.setdefault("tls_active", True)
    return MechanismRegistry.default().select(offered, kind=kind, **kw).name


def test_default_contents() -> None:
    registry = MechanismRegistry.default()
    assert set(registry.names()) == set(EVERYTHING)
    assert registry.default_preference(PASSWORD) == DEFAULT_PASSWORD_PREFERENCE
    assert registry.default_preference(TOKEN) == DEFAULT_TOKEN_PREFERENCE
    assert DEFAULT_PASSWORD_PREFERENCE[:2] == ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")
    assert DEFAULT_TOKEN_PREFERENCE[0] == "XOAUTH2"
    assert "CRAM-MD5" not in DEFAULT_PASSWORD_PREFERENCE
    for name in registry.names():
        mech = registry.get(name)
        assert isinstance(mech, Mechanism)
        assert mech.name == name


def test_default_returns_a_fresh_registry() -> None:
    first = MechanismRegistry.default()
    first.unregister("PLAIN")
    assert "PLAIN" not in first
    assert "PLAIN" in MechanismRegistry.default()
    assert "PLAIN" in MechanismRegistry.default().default_preference(PASSWORD)


def test_get_and_require() -> None:
    registry = MechanismRegistry.default()
    assert registry.get("plain") is registry.get("PLAIN")
    assert registry.get("NOPE") is None
    with pytest.raises(AuthError, match="NOPE is not registered"):
        registry.require("nope")
    assert registry.require("scram-sha-1").name == "SCRAM-SHA-1"


@pytest.mark.parametrize(
    ("offered", "expected", "kwargs"),
    [
        (EVERYTHING, "SCRAM-SHA-256", {}),
        (EVERYTHING, "SCRAM-SHA-256-PLUS", {"channel_binding_available": True}),
        (
            ("SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"),
            "SCRAM-SHA-1-PLUS",
            {"channel_binding_available": True},
        ),
        (("PLAIN", "LOGIN", "SCRAM-SHA-1"), "SCRAM-SHA-1", {}),
        (("LOGIN", "PLAIN"), "PLAIN", {}),
        (("LOGIN", "CRAM-MD5"), "LOGIN", {}),
        (("login", "plain"), "PLAIN", {}),  # case-insensitive
        (("Scram-Sha-256", "PLAIN"), "SCRAM-SHA-256", {}),
        (("CRAM-MD5", "PLAIN"), "CRAM-MD5", {"preference": ["cram-md5", "PLAIN"]}),
        (("PLAIN", "LOGIN"), "LOGIN", {"preference": ["LOGIN"]}),
        (("PLAIN",), "PLAIN", {"tls_active": False, "allow_plaintext": True}),
        (("PLAIN", "SCRAM-SHA-256"), "SCRAM-SHA-256", {"tls_active": False}),
        (
            ("PLAIN", "CRAM-MD5"),
            "CRAM-MD5",
            {"tls_active": False, "preference": ["PLAIN", "CRAM-MD5"]},
        ),
    ],
)
def test_select_password(
    offered: tuple[str, ...], expected: str, kwargs: dict[str, typing.Any]
) -> None:
    assert pick(offered, **kwargs) == expected


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        (EVERYTHING, "XOAUTH2"),
        (("OAUTHBEARER", "PLAIN"), "OAUTHBEARER"),
        (("LOGIN", "PLAIN", "XOAUTH2"), "XOAUTH2"),
    ],
)
def test_select_token(offered: tuple[str, ...], expected: str) -> None:
    assert pick(offered, TOKEN) == expected


def test_cram_md5_never_chosen_by_default() -> None:
    with pytest.raises(AuthError) as info:
        pick(("CRAM-MD5",))
    message = str(info.value)
    assert "server offers CRAM-MD5" in message
    assert "SCRAM-SHA-256-PLUS, SCRAM-SHA-256" in message


def test_plaintext_refused_with_reasons() -> None:
    with pytest.raises(AuthError) as info:
        pick(("PLAIN", "LOGIN"), tls_active=False)
    message = str(info.value)
    assert "our preference is SCRAM-SHA-256-PLUS" in message
    assert "the server offers PLAIN, LOGIN" in message
    assert "PLAIN (would reveal the password without TLS)" in message


def test_plaintext_token_refused() -> None:
    with pytest.raises(AuthError, match="XOAUTH2 \\(would reveal the token without TLS\\)"):
        pick(("XOAUTH2",), TOKEN, tls_active=False)


def test_plus_needs_channel_binding() -> None:
    with pytest.raises(AuthError, match="no TLS channel binding"):
        pick(("SCRAM-SHA-256-PLUS",))


def test_kind_mismatch_in_explicit_preference() -> None:
    with pytest.raises(AuthError, match=r"XOAUTH2 \(needs a token\)"):
        pick(("XOAUTH2", "PLAIN"), preference=["XOAUTH2"])
    with pytest.raises(AuthError, match=r"PLAIN \(needs a password\)"):
        pick(("PLAIN",), TOKEN, preference=["PLAIN"])


def test_unregistered_preference_named() -> None:
    with pytest.raises(AuthError, match=r"X-UNKNOWN \(not registered\)"):
        pick(("X-UNKNOWN",), preference=["X-UNKNOWN"])


def test_nothing_offered() -> None:
    with pytest.raises(AuthError, match="the server offers nothing"):
        pick(())
    with pytest.raises(AuthError, match="our preference is -"):
        pick(("PLAIN",), preference=[])


def test_third_party_mechanism() -> None:
    registry = MechanismRegistry.default()
    registry.register(External(), position=0)
    assert registry.default_preference(PASSWORD)[0] == "X-EXTERNAL"
    chosen = registry.select(["PLAIN", "x-external"], kind=PASSWORD, tls_active=True)
    assert isinstance(chosen, External)
    registry.register(External("X-LAST"))
    assert registry.default_preference(PASSWORD)[-1] == "X-LAST"
    registry.register(External("X-HIDDEN"), in_default_preference=False)
    assert "X-HIDDEN" not in registry.default_preference(PASSWORD)
    assert "X-HIDDEN" in registry


def test_plugin_with_channel_binding_flag() -> None:
    assert requires_channel_binding(ScramMechanism(channel_binding=True))
    assert not requires_channel_binding(PlainMechanism())
    assert requires_channel_binding(External("X-FOO-PLUS"))


def test_duplicate_registration() -> None:
    registry = MechanismRegistry.default()
    with pytest.raises(ConfigurationError, match="already registered"):
        registry.register(PlainMechanism())
    replacement = External("PLAIN")
    registry.register(replacement, replace=True)
    assert registry.get("PLAIN") is replacement


@pytest.mark.parametrize("bad", [PlainMechanism, object(), "PLAIN"])
def test_register_rejects_non_mechanisms(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="not a SASL mechanism"):
        MechanismRegistry().register(bad)  # type: ignore[arg-type]


def test_copy_is_independent() -> None:
    original = MechanismRegistry.default()
    clone = original.copy()
    clone.unregister("LOGIN")
    assert "LOGIN" in original
    assert "LOGIN" in original.default_preference(PASSWORD)
    assert "LOGIN" not in clone.default_preference(PASSWORD)


def test_empty_registry() -> None:
    registry = MechanismRegistry([External()])
    assert registry.names() == ("X-EXTERNAL",)
    assert registry.select(["X-EXTERNAL"], kind=PASSWORD, tls_active=False).name == "X-EXTERNAL"
    assert "X-EXTERNAL" in repr(registry)


# --- entry points ------------------------------------------------------------------------------


def _install_plugin(root: Path, entry_points: str, module_source: str) -> None:
    """Write a minimal installed distribution (dist-info + module) that importlib.metadata sees."""
    (root / "mailsdk_test_plugin.py").write_text(textwrap.dedent(module_source))
    dist = root / "mailsdk_test_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mailsdk-test-plugin\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))


PLUGIN_SOURCE = """
    import attrs
    from mailsdk.auth import BaseExchange, CredentialKind

    @attrs.frozen
    class Plugged:
        name: str = "X-PLUGGED"
        credential_kind: CredentialKind = CredentialKind.PASSWORD
        sends_reusable_secret: bool = False
        supports_initial_response: bool = False

        def start(self, credentials, context):
            return BaseExchange(self.name)

    INSTANCE = Plugged("X-INSTANCE")

    def several():
        return [Plugged("X-ONE"), Plugged("X-TWO")]

    def broken():
        raise RuntimeError("boom")

    def nothing():
        return None
"""


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "mailsdk_test_plugin", raising=False)
    return tmp_path


def test_load_entry_points(plugin_dir: Path) -> None:
    _install_plugin(
        plugin_dir,
        """
        [mailsdk.sasl]
        plugged = mailsdk_test_plugin:Plugged
        instance = mailsdk_test_plugin:INSTANCE
        several = mailsdk_test_plugin:several
        """,
        PLUGIN_SOURCE,
    )
    registry = MechanismRegistry.default()
    added = registry.load_entry_points()
    assert sorted(added) == ["X-INSTANCE", "X-ONE", "X-PLUGGED", "X-TWO"]
    assert registry.select(["X-TWO"], kind=PASSWORD, tls_active=True).name == "X-TWO"
    # Discovery is opt-in: a fresh default registry does not see plugins.
    assert "X-PLUGGED" not in MechanismRegistry.default()


def test_entry_point_cannot_silently_replace_builtin(plugin_dir: Path) -> None:
    _install_plugin(
        plugin_dir,
        """
        [mailsdk.sasl.evil]
        plain = mailsdk_test_plugin:evil
        """,
        PLUGIN_SOURCE + "\n    def evil():\n        return Plugged('PLAIN')\n",
    )
    registry = MechanismRegistry.default()
    with pytest.raises(ConfigurationError, match="PLAIN is already registered"):
        registry.load_entry_points("mailsdk.sasl.evil")
    assert isinstance(registry.get("PLAIN"), PlainMechanism)


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ("mailsdk_test_plugin:broken", "failed to load: RuntimeError"),
        ("mailsdk_test_plugin:missing", "failed to load: AttributeError"),
        ("mailsdk_test_plugin:nothing", "did not produce a mechanism"),
    ],
)
def test_entry_point_failures(plugin_dir: Path, target: str, match: str) -> None:
    _install_plugin(plugin_dir, f"[mailsdk.sasl.bad]\nbad = {target}\n", PLUGIN_SOURCE)
    with pytest.raises(ConfigurationError, match=match):
        MechanismRegistry.default().load_entry_points("mailsdk.sasl.bad")


def test_no_entry_points_is_fine() -> None:
    assert MechanismRegistry.default().load_entry_points("mailsdk.sasl.none-installed") == ()
