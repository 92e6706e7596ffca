"""MAIL FROM / RCPT TO parameter builders checked against the capabilities."""

from __future__ import annotations

import attrs
import pytest

from mailsdk.errors import CapabilityError, InvalidInputError
from mailsdk.esmtp import (
    Capabilities,
    MailOptions,
    RcptOptions,
    mail_parameters,
    orcpt_value,
    parse_ehlo,
    rcpt_parameters,
    validate_parameter,
)
from mailsdk.protocol.reply import Reply


def caps_with(*lines: bytes) -> Capabilities:
    return parse_ehlo(Reply(250, (b"mx.example.com", *lines)))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (MailOptions(), ()),
        (MailOptions(size=999), ("SIZE=999",)),
        (MailOptions(size=1000), ("SIZE=1000",)),  # equal to the limit is fine
        (MailOptions(size=0), ("SIZE=0",)),
        (MailOptions(body="7BIT"), ("BODY=7BIT",)),
        (MailOptions(body="8BITMIME"), ("BODY=8BITMIME",)),
        (MailOptions(body="BINARYMIME"), ("BODY=BINARYMIME",)),
        (MailOptions(smtputf8=True), ("SMTPUTF8",)),
        (MailOptions(ret="HDRS"), ("RET=HDRS",)),
        (MailOptions(ret="FULL", envid="QQ314159"), ("RET=FULL", "ENVID=QQ314159")),
        (MailOptions(envid="id with+plus=eq"), ("ENVID=id+20with+2Bplus+3Deq",)),
        (MailOptions(requiretls=True), ("REQUIRETLS",)),
        (MailOptions(extra=("MT-PRIORITY=4",)), ("MT-PRIORITY=4",)),
        (
            MailOptions(
                size=10,
                body="8BITMIME",
                smtputf8=True,
                ret="HDRS",
                envid="e1",
                requiretls=True,
                extra=("HOLDFOR=60", "X-FLAG"),
            ),
            (
                "SIZE=10",
                "BODY=8BITMIME",
                "SMTPUTF8",
                "RET=HDRS",
                "ENVID=e1",
                "REQUIRETLS",
                "HOLDFOR=60",
                "X-FLAG",
            ),
        ),
    ],
)
def test_mail_parameters_table(
    full_caps: Capabilities, options: MailOptions, expected: tuple[str, ...]
) -> None:
    assert mail_parameters(options, full_caps) == expected


@pytest.mark.parametrize(
    ("options", "extension"),
    [
        (MailOptions(body="8BITMIME"), "8BITMIME"),
        (MailOptions(body="BINARYMIME"), "BINARYMIME"),
        (MailOptions(smtputf8=True), "SMTPUTF8"),
        (MailOptions(ret="FULL"), "DSN"),
        (MailOptions(envid="x"), "DSN"),
        (MailOptions(requiretls=True), "REQUIRETLS"),
    ],
)
def test_missing_extension_is_a_capability_error(
    bare_caps: Capabilities, helo_caps: Capabilities, options: MailOptions, extension: str
) -> None:
    for caps in (bare_caps, helo_caps):
        with pytest.raises(CapabilityError) as info:
            mail_parameters(options, caps)
        assert info.value.extension == extension
        assert extension in str(info.value)


def test_size_is_omitted_without_size_and_body_7bit_without_8bitmime(
    bare_caps: Capabilities, helo_caps: Capabilities
) -> None:
    for caps in (bare_caps, helo_caps):
        assert mail_parameters(MailOptions(size=10**12, body="7BIT"), caps) == ()


def test_size_over_the_limit(full_caps: Capabilities) -> None:
    with pytest.raises(CapabilityError, match="1001") as info:
        mail_parameters(MailOptions(size=1001), full_caps)
    assert info.value.extension == "SIZE"


@pytest.mark.parametrize("line", [b"SIZE", b"SIZE 0", b"SIZE unlimited"])
def test_size_advertised_without_limit_sends_size(line: bytes) -> None:
    assert mail_parameters(MailOptions(size=10**10), caps_with(line)) == ("SIZE=10000000000",)


def test_binarymime_needs_chunking_too() -> None:
    caps = caps_with(b"BINARYMIME", b"8BITMIME")
    with pytest.raises(CapabilityError) as info:
        mail_parameters(MailOptions(body="BINARYMIME"), caps)
    assert info.value.extension == "CHUNKING"
    assert mail_parameters(MailOptions(body="7BIT"), caps) == ("BODY=7BIT",)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": -1},
        {"size": True},
        {"size": "100"},
        {"body": "8bit"},
        {"body": "8bitmime"},
        {"ret": "NONE"},
        {"envid": "a\r\nRSET"},
        {"envid": "tab\there"},
        {"envid": ""},
        {"envid": "é"},
        {"envid": "x" * 101},
        {"extra": ("FOO BAR",)},
        {"extra": ("X=a\r\nRSET",)},
        {"extra": ("",)},
        {"extra": ("=VALUE",)},
        {"extra": ("KEY=",)},
        {"extra": ("KEY=a=b",)},
        {"extra": ("_BAD",)},
        {"extra": (42,)},
    ],
)
def test_invalid_mail_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        MailOptions(**kwargs)  # type: ignore[arg-type]


def test_envid_at_the_limit_and_extra_as_single_string(full_caps: Capabilities) -> None:
    assert MailOptions(envid="x" * 100).envid == "x" * 100
    options = MailOptions(extra="AUTH=<>")
    assert options.extra == ("AUTH=<>",)
    assert mail_parameters(options, full_caps) == ("AUTH=<>",)


def test_duplicate_parameters_are_refused(full_caps: Capabilities) -> None:
    with pytest.raises(InvalidInputError, match="SIZE"):
        mail_parameters(MailOptions(size=5, extra=("size=6",)), full_caps)
    with pytest.raises(InvalidInputError, match="NOTIFY"):
        rcpt_parameters(RcptOptions(notify=("NEVER",), extra=("NOTIFY=NEVER",)), full_caps)


def test_options_are_immutable_and_hashable() -> None:
    options = MailOptions(size=1, extensions={"x-foo": 1})
    assert options.extensions == {"X-FOO": 1}
    with pytest.raises(TypeError):
        options.extensions["X-BAR"] = 2  # type: ignore[index]
    assert hash(MailOptions(size=1)) == hash(MailOptions(size=1, extensions={"X": 2}))
    assert hash(RcptOptions(notify=("SUCCESS",))) == hash(RcptOptions(notify="success"))


# --- RCPT -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (RcptOptions(), ()),
        (RcptOptions(notify=("NEVER",)), ("NOTIFY=NEVER",)),
        (RcptOptions(notify=("SUCCESS", "FAILURE")), ("NOTIFY=SUCCESS,FAILURE",)),
        (RcptOptions(notify=("DELAY", "FAILURE", "SUCCESS")), ("NOTIFY=DELAY,FAILURE,SUCCESS",)),
        (RcptOptions(notify="failure, delay"), ("NOTIFY=FAILURE,DELAY",)),
        (RcptOptions(orcpt="b@example.org"), ("ORCPT=rfc822;b@example.org",)),
        (RcptOptions(orcpt="<a+b@example.org>"), ("ORCPT=rfc822;a+2Bb@example.org",)),
        (
            RcptOptions(orcpt='"john doe"@example.org'),
            ('ORCPT=rfc822;"john+20doe"@example.org',),
        ),
        (
            RcptOptions(orcpt="δοκιμή@παράδειγμα.δοκιμή"),
            (
                "ORCPT=utf-8;\\x{3B4}\\x{3BF}\\x{3BA}\\x{3B9}\\x{3BC}\\x{3AE}@"
                "\\x{3C0}\\x{3B1}\\x{3C1}\\x{3AC}\\x{3B4}\\x{3B5}\\x{3B9}\\x{3B3}\\x{3BC}\\x{3B1}."
                "\\x{3B4}\\x{3BF}\\x{3BA}\\x{3B9}\\x{3BC}\\x{3AE}",
            ),
        ),
        (
            RcptOptions(notify=("FAILURE",), orcpt="x@y.example", extra=("X-A=1",)),
            ("NOTIFY=FAILURE", "ORCPT=rfc822;x@y.example", "X-A=1"),
        ),
    ],
)
def test_rcpt_parameters_table(
    full_caps: Capabilities, options: RcptOptions, expected: tuple[str, ...]
) -> None:
    assert rcpt_parameters(options, full_caps) == expected


@pytest.mark.parametrize(
    "notify",
    [("NEVER", "SUCCESS"), ("SUCCESS", "NEVER"), (), ("SUCCESS", "SUCCESS"), ("BOGUS",), ""],
)
def test_invalid_notify(notify: object) -> None:
    with pytest.raises(InvalidInputError):
        RcptOptions(notify=notify)  # type: ignore[arg-type]


@pytest.mark.parametrize("orcpt", ["a\r\n@b.example", "a@b\x00", "", "<>", "no-at-sign"])
def test_invalid_orcpt(orcpt: str) -> None:
    with pytest.raises(InvalidInputError):
        RcptOptions(orcpt=orcpt)


@pytest.mark.parametrize(
    "options", [RcptOptions(notify=("NEVER",)), RcptOptions(orcpt="a@b.example")]
)
def test_rcpt_dsn_required(
    bare_caps: Capabilities, helo_caps: Capabilities, options: RcptOptions
) -> None:
    for caps in (bare_caps, helo_caps):
        with pytest.raises(CapabilityError) as info:
            rcpt_parameters(options, caps)
        assert info.value.extension == "DSN"


def test_extra_rcpt_params_need_no_capability(bare_caps: Capabilities) -> None:
    assert rcpt_parameters(RcptOptions(extra=("X-Y=z",)), bare_caps) == ("X-Y=z",)


def test_orcpt_value_and_validate_parameter() -> None:
    assert orcpt_value("user=x@example.com") == "rfc822;user+3Dx@example.com"
    assert orcpt_value("é@example.com") == "utf-8;\\x{E9}@example.com"
    assert validate_parameter("SIZE=1") == "SIZE=1"
    assert validate_parameter("X-UTF8=naïve") == "X-UTF8=naïve"  # RFC 6531 esmtp-value
    with pytest.raises(InvalidInputError, match="control"):
        validate_parameter("X=\x85\r")


def test_options_survive_attrs_evolve(full_caps: Capabilities) -> None:
    base = MailOptions(envid="e", extra=("X-A=1",), extensions={"x-b": 2})
    evolved = attrs.evolve(base, size=10, body="8BITMIME", smtputf8=True)
    assert evolved.extensions == {"X-B": 2}
    assert evolved.extra == ("X-A=1",)
    assert mail_parameters(attrs.evolve(evolved, extensions={}), full_caps) == (
        "SIZE=10",
        "BODY=8BITMIME",
        "SMTPUTF8",
        "ENVID=e",
        "X-A=1",
    )
    with pytest.raises(InvalidInputError):
        attrs.evolve(base, size=-3)


@pytest.mark.parametrize(
    ("factory", "kwargs", "named"),
    [
        (MailOptions, {"envid": 5}, "ENVID"),
        (MailOptions, {"envid": b"id"}, "ENVID"),
        (MailOptions, {"extra": 5}, "extra"),
        (MailOptions, {"extra": None}, "extra"),
        (MailOptions, {"extra": b"X-A=1"}, "extra"),
        (MailOptions, {"extensions": [("X-A", 1)]}, "extensions"),
        (MailOptions, {"extensions": None}, "extensions"),
        (RcptOptions, {"notify": 5}, "NOTIFY"),
        (RcptOptions, {"orcpt": 5}, "ORCPT"),
        (RcptOptions, {"extra": 5}, "extra"),
    ],
)
def test_options_of_the_wrong_type_are_invalid_input(
    factory: type[MailOptions | RcptOptions], kwargs: dict[str, object], named: str
) -> None:
    # Each of these escaped as a bare TypeError or AttributeError.
    with pytest.raises(InvalidInputError, match=named):
        factory(**kwargs)  # type: ignore[arg-type]
