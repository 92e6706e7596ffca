"""ExtensionRegistry: registration, defaults, entry points, third-party extensions end to end."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from pathlib import Path

import attrs
import pytest

from mailsdk.errors import CapabilityError, ConfigurationError, InvalidInputError
from mailsdk.esmtp import (
    Capabilities,
    Extension,
    ExtensionRegistry,
    FlagExtension,
    MailOptions,
    MailParameterHook,
    RcptOptions,
    RcptParameterHook,
    mail_parameters,
    parse_ehlo,
    rcpt_parameters,
)
from mailsdk.protocol.reply import Reply

BUILTINS = (
    "SIZE",
    "PIPELINING",
    "CHUNKING",
    "BINARYMIME",
    "8BITMIME",
    "SMTPUTF8",
    "STARTTLS",
    "AUTH",
    "ENHANCEDSTATUSCODES",
    "DSN",
    "REQUIRETLS",
)


@attrs.frozen
class MtPriority:
    """RFC 6710 MT-PRIORITY: advertises a policy name, takes MT-PRIORITY=<-9..9> on MAIL."""

    keyword: str = "MT-PRIORITY"

    def parse(self, params: str) -> object:
        return params.split()[0].upper() if params.split() else "MIXER"

    def mail_parameters(self, options: MailOptions, caps: Capabilities) -> Iterable[str]:
        value = options.extensions.get(self.keyword)
        if value is None:
            return ()
        caps.require(self.keyword, purpose="MT-PRIORITY=")
        return (f"MT-PRIORITY={int(str(value))}",)


@attrs.frozen
class RcptTag:
    """A made-up extension contributing a RCPT parameter."""

    keyword: str = "X-TAG"

    def parse(self, params: str) -> object:
        return True

    def rcpt_parameters(self, options: RcptOptions, caps: Capabilities) -> Iterable[str]:
        value = options.extensions.get(self.keyword)
        if value is None:
            return ()
        caps.require(self.keyword)
        return f"X-TAG={value}"  # a bare str is accepted as one parameter


def test_default_holds_the_builtins_and_is_fresh() -> None:
    first = ExtensionRegistry.default()
    second = ExtensionRegistry.default()
    assert first.keywords() == BUILTINS
    assert len(first) == len(BUILTINS)
    first.register(FlagExtension("X-ONE"))
    assert "X-ONE" in first
    assert "X-ONE" not in second
    assert ExtensionRegistry.default().keywords() == BUILTINS


def test_get_is_case_insensitive() -> None:
    registry = ExtensionRegistry.default()
    ext = registry.get("8bitmime")
    assert ext is not None
    assert ext.keyword == "8BITMIME"
    assert registry.get("X-NOPE") is None
    assert "size" in registry
    assert 42 not in registry


def test_register_duplicate_and_replace_keeps_position() -> None:
    registry = ExtensionRegistry.default()
    replacement = FlagExtension("SIZE")
    with pytest.raises(ConfigurationError, match="already registered"):
        registry.register(replacement)
    registry.register(replacement, replace=True)
    assert registry.get("SIZE") is replacement
    assert registry.keywords() == BUILTINS


class _NoParse:
    keyword = "X-NP"


class _LowerKeyword:
    keyword = "x-low"

    def parse(self, params: str) -> object:
        return params


class _NonStrKeyword:
    keyword = 42

    def parse(self, params: str) -> object:
        return params


@pytest.mark.parametrize("bad", [_NoParse(), _LowerKeyword(), _NonStrKeyword(), object(), "SIZE"])
def test_register_rejects_non_extensions(bad: object) -> None:
    with pytest.raises(ConfigurationError):
        ExtensionRegistry().register(bad)  # type: ignore[arg-type]


def test_unregister_copy_iter() -> None:
    registry = ExtensionRegistry.default()
    clone = registry.copy()
    registry.unregister("dsn")
    assert "DSN" not in registry
    assert "DSN" in clone
    with pytest.raises(ConfigurationError):
        registry.unregister("DSN")
    assert [e.keyword for e in clone] == list(BUILTINS)
    assert "DSN" not in repr(registry)
    assert "SIZE" in repr(registry)


def test_protocol_checks() -> None:
    assert isinstance(MtPriority(), Extension)
    assert isinstance(MtPriority(), MailParameterHook)
    assert not isinstance(MtPriority(), RcptParameterHook)
    assert isinstance(RcptTag(), RcptParameterHook)


# --- third-party extension end to end ---------------------------------------------------------


def _registry() -> ExtensionRegistry:
    registry = ExtensionRegistry.default()
    registry.register(MtPriority())
    registry.register(RcptTag())
    return registry


def test_third_party_extension_parses_and_contributes_mail_parameter() -> None:
    reply = Reply(250, (b"mx.example.com", b"SIZE 5000", b"MT-PRIORITY stanag4406", b"X-TAG"))
    caps = parse_ehlo(reply, _registry())
    assert caps.get("MT-PRIORITY") == "STANAG4406"
    assert caps.get_as("MT-PRIORITY", str) == "STANAG4406"
    options = MailOptions(size=100, extensions={"mt-priority": 3})
    assert mail_parameters(options, caps) == ("SIZE=100", "MT-PRIORITY=3")
    # no option value: the hook contributes nothing
    assert mail_parameters(MailOptions(size=100), caps) == ("SIZE=100",)
    rcpt = rcpt_parameters(RcptOptions(extensions={"X-TAG": "blue"}), caps)
    assert rcpt == ("X-TAG=blue",)


def test_third_party_hook_refuses_when_not_advertised() -> None:
    caps = parse_ehlo(Reply(250, (b"mx.example.com", b"PIPELINING")), _registry())
    with pytest.raises(CapabilityError) as info:
        mail_parameters(MailOptions(extensions={"MT-PRIORITY": -2}), caps)
    assert info.value.extension == "MT-PRIORITY"
    with pytest.raises(CapabilityError) as rinfo:
        rcpt_parameters(RcptOptions(extensions={"X-TAG": "x"}), caps)
    assert rinfo.value.extension == "X-TAG"


def test_option_for_an_unregistered_extension_is_a_configuration_error() -> None:
    caps = parse_ehlo(Reply(250, (b"mx.example.com", b"MT-PRIORITY")))  # built-ins only
    with pytest.raises(ConfigurationError, match="MT-PRIORITY"):
        mail_parameters(MailOptions(extensions={"MT-PRIORITY": 1}), caps)
    # ...but passing the registry explicitly makes it work
    params = mail_parameters(MailOptions(extensions={"MT-PRIORITY": 1}), caps, registry=_registry())
    assert params == ("MT-PRIORITY=1",)
    with pytest.raises(ConfigurationError, match="X-TAG"):
        rcpt_parameters(RcptOptions(extensions={"X-TAG": 1}), caps)


def test_hook_output_is_validated_against_injection() -> None:
    caps = parse_ehlo(Reply(250, (b"mx.example.com", b"X-TAG")), _registry())
    with pytest.raises(InvalidInputError, match="X-TAG"):
        rcpt_parameters(RcptOptions(extensions={"X-TAG": "a\r\nRSET"}), caps)
    with pytest.raises(InvalidInputError):
        rcpt_parameters(RcptOptions(extensions={"X-TAG": "two words"}), caps)


# --- entry points -------------------------------------------------------------------------------

PLUGIN_MODULE = textwrap.dedent(
    '''
    """A fake third-party distribution publishing ESMTP extensions."""


    class Deliverby:
        keyword = "DELIVERBY"

        def parse(self, params):
            return int(params) if params.isdigit() else None


    class Burl:
        keyword = "BURL"

        def parse(self, params):
            return tuple(params.split())


    def make_future():
        class Future:
            keyword = "FUTURERELEASE"

            def parse(self, params):
                return params

        return Future()


    class SizeOverride:
        keyword = "SIZE"

        def parse(self, params):
            return -1


    DELIVERBY = Deliverby()
    '''
)


def _install_fake_distribution(root: Path, entry_points: str) -> None:
    (root / "mailsdk_fake_esmtp_plugin.py").write_text(PLUGIN_MODULE, encoding="utf-8")
    dist_info = root / "mailsdk_fake_esmtp_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mailsdk-fake-esmtp-plugin\nVersion: 1.0\n",
        encoding="utf-8",
    )
    (dist_info / "entry_points.txt").write_text(entry_points, encoding="utf-8")


def test_load_entry_points_without_any_is_a_no_op() -> None:
    registry = ExtensionRegistry.default()
    assert registry.load_entry_points(group="mailsdk.test.no-such-group") == ()
    assert registry.keywords() == BUILTINS
    # the default group: nothing installed publishes ESMTP extensions in this environment
    assert registry.load_entry_points() == ()


def test_load_entry_points_from_a_fake_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_fake_distribution(
        tmp_path,
        "[mailsdk.test.esmtp]\n"
        "deliverby = mailsdk_fake_esmtp_plugin:DELIVERBY\n"
        "burl = mailsdk_fake_esmtp_plugin:Burl\n"
        "future = mailsdk_fake_esmtp_plugin:make_future\n"
        "size = mailsdk_fake_esmtp_plugin:SizeOverride\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "mailsdk_fake_esmtp_plugin", raising=False)
    registry = ExtensionRegistry.default()
    added = registry.load_entry_points(group="mailsdk.test.esmtp")
    assert sorted(added) == ["BURL", "DELIVERBY", "FUTURERELEASE"]  # SIZE: explicit wins
    reply = Reply(
        250,
        (b"mx.example.com", b"DELIVERBY 240", b"BURL imap", b"FUTURERELEASE 604800", b"SIZE 9"),
    )
    caps = parse_ehlo(reply, registry)
    assert caps.get("DELIVERBY") == 240
    assert caps.get("BURL") == ("imap",)
    assert caps.get("FUTURERELEASE") == "604800"
    assert caps.max_size == 9


def test_load_entry_points_reports_broken_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_fake_distribution(
        tmp_path,
        "[mailsdk.test.broken]\nmissing = mailsdk_fake_esmtp_plugin:DoesNotExist\n"
        "[mailsdk.test.notext]\nnotext = textwrap:dedent\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = ExtensionRegistry.default()
    with pytest.raises(ConfigurationError, match="missing"):
        registry.load_entry_points(group="mailsdk.test.broken")
    with pytest.raises(ConfigurationError):
        registry.load_entry_points(group="mailsdk.test.notext")
    assert registry.keywords() == BUILTINS


@attrs.frozen
class Unconditional:
    """A hook like the extensions guide's example: it never checks the capabilities itself."""

    keyword: str = "X-ALWAYS"

    def parse(self, params: str) -> object:
        return True

    def mail_parameters(self, options: MailOptions, caps: Capabilities) -> Iterable[str]:
        value = options.extensions.get(self.keyword, "on")
        return (f"X-ALWAYS={value}",)

    def rcpt_parameters(self, options: RcptOptions, caps: Capabilities) -> Iterable[str]:
        return ("X-ALWAYS",)


def test_hooks_contribute_only_for_advertised_extensions() -> None:
    registry = ExtensionRegistry.default()
    registry.register(Unconditional())
    plain = parse_ehlo(Reply(250, (b"mx.example.com", b"SIZE 100")), registry)
    assert mail_parameters(MailOptions(size=10), plain) == ("SIZE=10",)
    assert rcpt_parameters(RcptOptions(), plain) == ()
    offered = parse_ehlo(Reply(250, (b"mx.example.com", b"X-ALWAYS")), registry)
    assert mail_parameters(MailOptions(), offered) == ("X-ALWAYS=on",)
    assert rcpt_parameters(RcptOptions(), offered) == ("X-ALWAYS",)


def test_an_option_for_an_extension_the_server_lacks_is_a_capability_error() -> None:
    registry = ExtensionRegistry.default()
    registry.register(Unconditional())
    plain = parse_ehlo(Reply(250, (b"mx.example.com", b"SIZE 100")), registry)
    with pytest.raises(CapabilityError, match="X-ALWAYS") as info:
        mail_parameters(MailOptions(extensions={"X-ALWAYS": "1"}), plain)
    assert info.value.extension == "X-ALWAYS"
    with pytest.raises(CapabilityError, match="X-ALWAYS"):
        rcpt_parameters(RcptOptions(extensions={"x-always": "1"}), plain)
