"""Mail server URLs: ``smtp://user@host:587?tls=starttls`` → the settings a builder applies.

Layer: between L5 (client) and L6 (builder): may import L0-L4; never client, builder (except
for type checking), api, compat or cli. Parsing is pure; the only outside read is the
environment variable a URL names with ``password_env``.

Forms (RFC 3986 syntax; user and password are percent-decoded)::

    smtp://[user[:password]@]host[:port][?options]       TLS: implicit on 465, else STARTTLS
    smtps://[user[:password]@]host[:port][?options]      implicit TLS, port 465
    lmtp://host[:port][?options]                         LMTP over TCP (port 2003), STARTTLS
    lmtp+unix:///run/dovecot/lmtp[?options]              LMTP on a unix socket, no TLS
    smtp+unix:///path/to/socket[?options]                SMTP on a unix socket, no TLS

Options (query parameters; each at most once; unknown ones are refused by name):
``tls`` (implicit, starttls, opportunistic, none), ``timeout`` (every phase) and
``connect_timeout``, ``greeting_timeout``, ``command_timeout``, ``tls_timeout``,
``data_timeout``, ``quit_timeout`` (seconds), ``local_hostname``, ``server_hostname`` (the name
the certificate is checked against), ``verify`` (true/false), ``ca_file``, ``auth`` (mechanisms,
comma-separated, in preference order), ``authzid``, ``allow_plaintext`` (true/false),
``password_env`` (the environment variable holding the password), ``pipelining``
(true/false), ``chunking`` (auto/true/false), ``source_address``.

A password can come from the ``password`` argument, from ``password_env``, or from the URL
itself; giving two is an error. The password is wrapped in a :class:`~mailsdk.Secret` at once
and never appears in a ``repr``, a log line or an error: errors quote the URL with the
password replaced by ``***`` (:func:`redact_url`).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import typing
import urllib.parse

import attrs

from mailsdk._secret import Secret
from mailsdk.config import Timeouts
from mailsdk.errors import ConfigurationError
from mailsdk.flows import TlsMode

if typing.TYPE_CHECKING:
    from mailsdk.builder import ClientBuilder

__all__ = ["MailUrl", "parse_mail_url", "redact_url"]

SCHEMES: typing.Final = ("smtp", "smtps", "lmtp", "lmtp+unix", "smtp+unix")
_TIMEOUTS: typing.Final = {
    f"{field.name}_timeout": field.name
    for field in attrs.fields(Timeouts)
    if field.name != "data_rate"
}
OPTIONS: typing.Final = frozenset(
    {
        "tls",
        "timeout",
        *_TIMEOUTS,
        "local_hostname",
        "server_hostname",
        "verify",
        "ca_file",
        "auth",
        "authzid",
        "allow_plaintext",
        "password_env",
        "pipelining",
        "chunking",
        "source_address",
    }
)
#: Whitespace and controls (C0, DEL, C1): urllib silently *removes* tab, CR and LF, which would
#: turn ``smtp://host\r\n.evil`` into another host; such a URL is refused instead.
_UNSAFE: typing.Final = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029]")
_HOST: typing.Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_SECRET_QUERY: typing.Final = re.compile(
    r"((?:^|[?&;])(?:[a-z_]*pass(?:word)?|passwd|pwd|secret|token|access_token)=)[^&;#]*",
    re.IGNORECASE,
)
_ZONE: typing.Final = re.compile(r"[A-Za-z0-9._~-]+")
_TRUE: typing.Final = frozenset({"1", "true", "yes", "on"})
_FALSE: typing.Final = frozenset({"0", "false", "no", "off"})
#: A scheme and the slashes after it: ``smtp://``, but also ``smtp:`` or ``smtp:/`` (a typo
#: whose user and password urllib then parses as a path, still to be redacted).
_PREFIX: typing.Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(/*)")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (and controls escaped), safe to show.

    The password is taken to end at the last ``@`` before the query, or at the last ``@`` of
    all when a password holds an unencoded ``/``, ``?`` or ``#``: it may over-redact an odd
    URL, never under-redact.
    """
    text = _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", url)
    # A password put in the query by mistake (?password=..., not an option) is hidden too.
    text = _SECRET_QUERY.sub(r"\1***", text)
    # The credentials follow the scheme and its slashes, however many slashes there are
    # (``smtp:user:pw@host`` too); without a known scheme, the whole text may be userinfo.
    prefix = _PREFIX.match(text)
    known = prefix is not None and bool(prefix.group(2) or prefix.group(1).lower() in SCHEMES)
    start = prefix.end() if prefix is not None and known else 0
    rest = text[start:]
    head = re.split(r"[?#]", rest, maxsplit=1)[0]
    at = head.rfind("@")
    if at < 0 or ":" not in head[:at]:
        at = rest.rfind("@")
    userinfo = rest[:at] if at >= 0 else ""
    if ":" not in userinfo:
        return text
    user = userinfo.partition(":")[0]
    return f"{text[:start]}{user}:***{rest[at:]}"


def _valid_host(hostport: str) -> bool:
    """The host part as written: a DNS name, an IPv4 address or a bracketed IPv6 literal."""
    if hostport.startswith("["):
        literal, _bracket, after = hostport[1:].partition("]")
        if after and not after.startswith(":"):  # "[::1]x:25": nothing between ] and :port
            return False
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return False
        return True
    return bool(_HOST.fullmatch(hostport.partition(":")[0]))


@attrs.frozen(kw_only=True)
class MailUrl:
    """A parsed mail server URL (see the module docstring for the forms and options).

    Attributes:
        scheme: ``smtp``, ``smtps``, ``lmtp``, ``lmtp+unix`` or ``smtp+unix``.
        host: the server name or address (``None`` for a unix socket).
        port: the port, when the URL names one.
        path: the unix socket path.
        username: the percent-decoded user, if any.
        password: the password as a :class:`~mailsdk.Secret` (never shown).
        options: the query parameters, each a single decoded string.
    """

    scheme: str
    host: str | None = None
    port: int | None = None
    path: str | None = None
    username: str | None = None
    password: Secret | None = attrs.field(default=None, repr=False)
    options: dict[str, str] = attrs.field(factory=dict[str, str])

    @property
    def lmtp(self) -> bool:
        """Whether the URL selects LMTP."""
        return self.scheme.startswith("lmtp")

    def builder(self, cls: type[ClientBuilder]) -> ClientBuilder:
        """A :class:`~mailsdk.ClientBuilder` with every setting of this URL applied.

        Raises:
            ConfigurationError: an option value is invalid, or a user has no password.
        """
        if self.path is not None:
            builder = cls.unix(self.path, lmtp=self.lmtp)
        else:
            assert self.host is not None
            builder = cls.smtp(self.host, self.port)
            if self.scheme == "smtps":
                builder = builder.with_tls(TlsMode.IMPLICIT)
            if self.lmtp:
                builder = builder.with_lmtp()
        opts = dict(self.options)
        if "tls" in opts:
            builder = builder.with_tls(opts.pop("tls"))
        builder = _apply_tls(builder, opts)
        builder = _apply_timeouts(builder, opts)
        if "local_hostname" in opts:
            builder = builder.with_local_hostname(opts.pop("local_hostname"))
        if "source_address" in opts:
            builder = builder.with_source_address(opts.pop("source_address"))
        if "pipelining" in opts:
            builder = builder.with_pipelining(_flag("pipelining", opts.pop("pipelining")))
        if "chunking" in opts:
            value = opts.pop("chunking")
            builder = builder.with_chunking(None if value == "auto" else _flag("chunking", value))
        auth = {
            name: opts.pop(name) for name in ("auth", "authzid", "allow_plaintext") if name in opts
        }
        opts.pop("password_env", None)
        assert not opts, f"unhandled URL options {sorted(opts)}"
        if self.username is None:
            if self.password is not None or auth.keys() & {"auth", "authzid"}:
                raise ConfigurationError("the URL has a password or auth options but no user")
            return builder
        if self.password is None:
            raise ConfigurationError(
                f"no password for user {self.username!r}: pass password=, name an environment "
                "variable with ?password_env=, or put it in the URL"
            )
        mechanisms = [m.strip().upper() for m in auth.get("auth", "").split(",") if m.strip()]
        return builder.with_credentials(
            self.username,
            self.password,
            mechanisms=mechanisms or None,
            authzid=auth.get("authzid"),
            allow_plaintext=_flag("allow_plaintext", auth.get("allow_plaintext", "false")),
        )


def _flag(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(f"URL option {name}={value!r}: use true or false")


def _seconds(name: str, value: str) -> float | None:
    if value.lower() in ("none", "off"):
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigurationError(f"URL option {name}={value!r}: a positive number of seconds")
    return seconds


def _apply_timeouts(builder: ClientBuilder, opts: dict[str, str]) -> ClientBuilder:
    base = Timeouts.uniform(_seconds("timeout", opts.pop("timeout"))) if "timeout" in opts else None
    changes: dict[str, typing.Any] = {
        field: _seconds(name, opts.pop(name)) for name, field in _TIMEOUTS.items() if name in opts
    }
    if base is None and not changes:
        return builder
    return builder.with_timeouts(attrs.evolve(base or builder.timeouts, **changes))


def _apply_tls(builder: ClientBuilder, opts: dict[str, str]) -> ClientBuilder:
    changes: dict[str, typing.Any] = {}
    if "verify" in opts:
        changes["verify"] = _flag("verify", opts.pop("verify"))
    if "ca_file" in opts:
        changes["ca_file"] = opts.pop("ca_file")
    if changes:
        builder = builder.with_tls_settings(attrs.evolve(builder.tls, **changes))
    if "server_hostname" in opts:
        name = opts.pop("server_hostname")
        if not _HOST.fullmatch(name):
            raise ConfigurationError(f"URL option server_hostname={name!r} is not a host name")
        builder = builder.with_tls(builder.tls_mode or _default_mode(builder), server_hostname=name)
    return builder


def _default_mode(builder: ClientBuilder) -> TlsMode:
    return TlsMode.IMPLICIT if builder.endpoint.port == 465 else TlsMode.STARTTLS


def parse_mail_url(url: str, *, password: str | Secret | None = None) -> MailUrl:
    """Parse a mail server URL (see the module docstring).

    Args:
        url: the URL.
        password: the password, when it is not in the URL or the environment.

    Raises:
        ConfigurationError: an unknown scheme or option (named), a malformed host, port or
            path, controls or spaces in the URL, a repeated option, or two passwords. The URL
            is quoted only with its password redacted.
    """
    if not isinstance(url, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ConfigurationError(f"a mail server URL is a str, not {type(url).__name__}")
    if password is not None and not isinstance(password, str | Secret):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ConfigurationError(f"password must be a str or Secret, not {type(password).__name__}")
    shown = redact_url(url)
    if _UNSAFE.search(url):
        raise ConfigurationError(f"the URL {shown} contains spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigurationError(
            f"the URL {shown} has an invalid host or port (percent-encode any / ? # @ : in "
            "the user or password)"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"the URL {shown} has scheme {parts.scheme!r}; use one of {', '.join(SCHEMES)}"
        )
    if parts.fragment:
        raise ConfigurationError(f"the URL {shown} has a fragment (#...); remove it")
    options = _options(parts.query, shown)
    _check_tls_agrees(scheme, options, shown)
    username = urllib.parse.unquote(parts.username) if parts.username else None
    in_url = Secret(urllib.parse.unquote(parts.password)) if parts.password is not None else None
    secret = _password(in_url, password, options.get("password_env"), shown)
    for text, what in ((username, "user name"), (secret.reveal() if secret else None, "password")):
        if text is not None and _UNSAFE.search(text.replace(" ", "")):
            # A decoded %0d%0a would reach the AUTH exchange; never echo the value.
            raise ConfigurationError(f"the URL {shown} has control characters in the {what}")
    if scheme.endswith("+unix"):
        if parts.netloc:
            raise ConfigurationError(
                f"the URL {shown} names a host; a unix socket URL is {scheme}:///path/to/socket"
            )
        path = urllib.parse.unquote(parts.path)
        if not path.startswith("/") or "\x00" in path:
            raise ConfigurationError(f"the URL {shown} needs an absolute socket path")
        return MailUrl(scheme=scheme, path=path, options=options)
    host = parts.hostname
    if not host or not _valid_host(parts.netloc.rpartition("@")[2]):
        raise ConfigurationError(
            f"the URL {shown} has no valid host name or address (ASCII; use the IDNA A-label "
            "form of an international name)"
        )
    if parts.path not in ("", "/"):
        raise ConfigurationError(f"the URL {shown} has a path; only unix socket URLs take one")
    if "%" in host:
        # An IPv6 zone (RFC 6874): [fe80::1%25eth0] in a URL is the address fe80::1%eth0.
        address, _pct, zone = host.partition("%")
        zone = urllib.parse.unquote("%" + zone).removeprefix("%")
        if not _ZONE.fullmatch(zone):
            raise ConfigurationError(f"the URL {shown} has an invalid IPv6 zone")
        host = f"{address}%{zone}"
    return MailUrl(
        scheme=scheme,
        host=host,
        port=port,
        username=username,
        password=secret,
        options=options,
    )


def _check_tls_agrees(scheme: str, options: dict[str, str], shown: str) -> None:
    """Refuse options that contradict the scheme instead of letting one silently win:
    ``smtps://`` is implicit TLS, a unix socket URL has no TLS at all."""
    tls = options.get("tls")
    if scheme == "smtps" and tls is not None and tls.lower() != "implicit":
        raise ConfigurationError(
            f"the URL {shown} says smtps (implicit TLS) and tls={tls}; use smtp://...?tls={tls} "
            "or drop the option"
        )
    if scheme.endswith("+unix"):
        if tls is not None and tls.lower() != "none":
            raise ConfigurationError(f"the URL {shown} is a unix socket (no TLS) but has tls={tls}")
        tls_only = sorted(options.keys() & {"server_hostname", "verify", "ca_file"})
        if tls_only:
            raise ConfigurationError(
                f"the URL {shown} is a unix socket (no TLS); {', '.join(tls_only)} would be ignored"
            )


def _options(query: str, shown: str) -> dict[str, str]:
    try:
        pairs = urllib.parse.parse_qsl(
            query, keep_blank_values=True, strict_parsing=bool(query), max_num_fields=64
        )
    except ValueError:
        raise ConfigurationError(f"the URL {shown} has a malformed query string") from None
    options: dict[str, str] = {}
    for name, value in pairs:
        if name in options:
            raise ConfigurationError(f"the URL option {name!r} is given twice")
        options[name] = value
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"unknown URL option(s) {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(sorted(OPTIONS))}"
        )
    for name, value in options.items():
        # A space is fine in a file name; nowhere else (host names, mechanisms, numbers).
        if _UNSAFE.search(value.replace(" ", "") if name == "ca_file" else value):
            raise ConfigurationError(f"the URL option {name!r} has spaces or control characters")
    return options


def _password(
    in_url: Secret | None, given: str | Secret | None, env_name: str | None, shown: str
) -> Secret | None:
    sources: list[Secret] = []
    if in_url is not None:
        sources.append(in_url)
    if given is not None:
        sources.append(Secret(given))
    if env_name is not None:
        value = os.environ.get(env_name)
        if value is None:
            raise ConfigurationError(f"the environment variable {env_name!r} is not set")
        sources.append(Secret(value))
    if len(sources) > 1:
        raise ConfigurationError(
            f"the URL {shown} gets two passwords (in the URL, password=, password_env); give one"
        )
    return sources[0] if sources else None
