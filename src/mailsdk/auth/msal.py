"""msal-backed token providers for Office 365 / Exchange Online SMTP AUTH (XOAUTH2).

Layer: L2 ``mailsdk.auth``, an *I/O edge* module (docs/architecture.md): it performs HTTP through
msal and file I/O for the token cache, and may import ``os``, ``threading``, ``time``, ``msal``,
``requests`` (msal's transport) and ``cryptography``. It is the ONLY mailsdk module that imports
``msal``. It may import L0 and :mod:`mailsdk.auth.tokens`; it must never import
``mailsdk.protocol``, ``esmtp``, ``flows``, ``transport`` or ``client``.

Two providers, both :class:`~mailsdk.auth.tokens.TokenProvider`\\ s:

* :class:`MsalAppOnlyProvider`: client credentials (a client secret or a certificate), scope
  ``https://outlook.office365.com/.default``; the mailbox to send as is the ``username``.
* :class:`MsalDeviceCodeProvider`: delegated, device-code flow once, then silent refresh from the
  cache (scope ``https://outlook.office.com/SMTP.Send``; msal adds ``offline_access``).

Both create their msal application once (lazily, on the first ``get_token``, because msal performs
OIDC discovery when it is constructed) and reuse it. msal returns error *dicts*; they become
:class:`~mailsdk.errors.TokenError` with the error code, description and correlation id. Secrets
never reach a message.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import attrs
import msal  # pyright: ignore[reportMissingTypeStubs]
import requests

from mailsdk._secret import Secret, SecretLike, as_secret
from mailsdk.auth._certificates import CertificateCredential
from mailsdk.auth.tokens import AccessToken, Clock
from mailsdk.errors import ConfigurationError, MailError, TokenError

__all__ = [
    "APP_ONLY_SCOPE",
    "DEFAULT_AUTHORITY_HOST",
    "DELEGATED_SCOPE",
    "CertificateCredential",
    "DeviceCodePrompt",
    "MsalAppOnlyProvider",
    "MsalDeviceCodeProvider",
    "MsalTokenCacheFile",
]

DEFAULT_AUTHORITY_HOST: typing.Final = "https://login.microsoftonline.com"
APP_ONLY_SCOPE: typing.Final = "https://outlook.office365.com/.default"
DELEGATED_SCOPE: typing.Final = "https://outlook.office.com/SMTP.Send"
#: Seconds msal may wait for the identity provider per HTTP request (msal's default: forever),
#: so a hanging authority cannot hang ``Client.connect()``.
HTTP_TIMEOUT: typing.Final = 30.0


class MsalTokenCacheFile:
    """A persistent msal token cache: loaded on creation, saved (0600, atomically) on change.

    Share one instance between providers that use the same file. Writes are atomic (temporary
    file created with ``os.open(..., 0o600)`` then ``os.replace``), so a crash never leaves a
    half-written cache and the file is never readable by other users. Concurrent *processes*
    sharing one file are not coordinated (use msal-extensions for that).

    Args:
        path: the cache file; its directory is created (0700) if missing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.cache = msal.SerializableTokenCache()
        self._lock = threading.Lock()
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ConfigurationError(f"cannot read token cache {str(self.path)!r}") from exc
        self._restrict_permissions()
        try:
            self.cache.deserialize(text)  # pyright: ignore[reportUnknownMemberType]
        except ValueError:
            self.cache = msal.SerializableTokenCache()  # a corrupt cache is only a cache

    def _restrict_permissions(self) -> None:
        """Make an existing cache file 0600: it holds refresh tokens (best effort)."""
        try:
            mode = self.path.stat().st_mode
            if mode & 0o077:
                self.path.chmod(0o600)
        except OSError:
            pass  # not ours to change (another owner, read-only file system): leave it

    def save(self) -> bool:
        """Write the cache if msal changed it. Returns True when the file was written.

        Raises:
            ConfigurationError: the file could not be written.
        """
        with self._lock:
            if not self.cache.has_state_changed:
                return False
            data = self.cache.serialize().encode("utf-8")
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp: Path | None = None
            try:
                # mkstemp: an unpredictable name opened with O_CREAT | O_EXCL and mode 0600, so a
                # file or symlink planted in a shared directory is never written through.
                fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
                tmp = Path(name)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except OSError as exc:
                if tmp is not None:
                    tmp.unlink(missing_ok=True)
                raise ConfigurationError(f"cannot write token cache {str(self.path)!r}") from exc
            self.cache.has_state_changed = False
            return True


@attrs.frozen
class DeviceCodePrompt:
    """What the user must be told to complete the device-code flow (RFC 8628 §3.3).

    Attributes:
        message: msal's ready-made instruction text.
        user_code: the code to type in.
        verification_uri: where to type it.
        expires_at: POSIX time at which the code stops working, if known.
    """

    message: str
    user_code: str
    verification_uri: str
    expires_at: float | None


def _token_error(
    what: str, result: Mapping[str, typing.Any], redact: Sequence[str] = ()
) -> TokenError:
    """Map an msal error dict to :class:`TokenError` (the description is the server's text,
    with any of the ``redact`` values an authority or a proxy echoed back replaced)."""
    error = str(result.get("error") or "unknown_error")
    description = result.get("error_description")
    description = str(description) if description is not None else None
    for secret in redact:
        if secret and description:
            description = description.replace(secret, "[redacted]")
        error = error.replace(secret, "[redacted]") if secret else error
    correlation = result.get("correlation_id")
    message = f"{what} failed: {error}"
    if description:
        message += f": {description.splitlines()[0]}"
    return TokenError(
        message,
        error=error,
        error_description=description,
        correlation_id=str(correlation) if correlation is not None else None,
    )


#: msal's instance discovery endpoint path (``https://<host>/common/discovery/instance``).
_DISCOVERY_PATH: typing.Final = "/discovery/instance"
_MAX_CLIENT_ID: typing.Final = 256


def _check_client_id(client_id: object) -> None:
    """An application (client) id: Entra ids are GUIDs, ADFS/B2C ones any printable token."""
    if not isinstance(client_id, str) or not client_id:
        raise ConfigurationError(
            f"client_id is required: the app registration's application id, not {client_id!r}"
        )
    if (
        len(client_id) > _MAX_CLIENT_ID
        or not client_id.isascii()
        or not client_id.isprintable()
        or any(ch.isspace() for ch in client_id)
    ):
        raise ConfigurationError(
            "client_id must be the app registration's application id (printable ASCII without "
            "spaces, usually a GUID)"
        )


class _MsalProvider:
    """Shared plumbing: authority, lazy application, result mapping, cache persistence."""

    _what: typing.ClassVar[str] = "msal token request"

    def __init__(
        self,
        tenant: str | None,
        client_id: str,
        *,
        scopes: Sequence[str],
        username: str | None,
        authority_host: str,
        authority: str | None,
        cache: MsalTokenCacheFile | str | os.PathLike[str] | None,
        http_client: requests.Session | None,
        instance_discovery: bool | str | None,
        validate_authority: bool,
        clock: Clock,
    ) -> None:
        if authority is None:
            if not tenant or "/" in tenant:
                raise ConfigurationError(
                    "tenant must be a tenant id or domain (or pass authority=)"
                )
            authority = f"{authority_host.rstrip('/')}/{tenant}"
        _check_client_id(client_id)
        self.authority = authority
        self.client_id = client_id
        self.scopes = list(scopes)
        self.username = username
        if cache is None or isinstance(cache, MsalTokenCacheFile):
            self._cache_file = cache
        else:
            self._cache_file = MsalTokenCacheFile(cache)
        self._http_client = http_client
        self._instance_discovery = instance_discovery
        self._validate_authority = validate_authority
        self._clock = clock
        self._lock = threading.RLock()
        self._app: typing.Any = None

    def _app_kwargs(self) -> dict[str, typing.Any]:
        kwargs: dict[str, typing.Any] = {
            "authority": self.authority,
            "validate_authority": self._validate_authority,
            "timeout": HTTP_TIMEOUT,
        }
        if self._cache_file is not None:
            kwargs["token_cache"] = self._cache_file.cache
        if self._http_client is not None:
            kwargs["http_client"] = self._http_client
        if self._instance_discovery is not None:
            kwargs["instance_discovery"] = self._instance_discovery
        return kwargs

    def _create_app(self) -> typing.Any:
        raise NotImplementedError

    def _application(self) -> typing.Any:
        """The msal application, created on first use (msal runs OIDC discovery here)."""
        if self._app is None:
            try:
                self._app = self._create_app()
            except MailError:
                raise
            except OSError as exc:  # requests.RequestException is an OSError too
                url = str(getattr(getattr(exc, "request", None), "url", None) or "")
                if _DISCOVERY_PATH in url:
                    raise TokenError(self._discovery_failed(type(exc).__name__)) from exc
                msg = f"cannot reach the authority {self.authority} ({type(exc).__name__})"
                raise TokenError(msg) from exc
            except (KeyError, json.JSONDecodeError) as exc:
                # Only the instance discovery reply is read unchecked by msal: tenant discovery
                # wraps its own errors in a ValueError that names the authority.
                raise TokenError(self._discovery_failed("an unusable reply")) from exc
            except ValueError as exc:
                # msal's messages name the authority and the discovery reply, never a credential.
                raise ConfigurationError(f"msal rejected the configuration: {exc}") from exc
        return self._app

    def _discovery_failed(self, why: str) -> str:
        endpoint = (
            self._instance_discovery
            if isinstance(self._instance_discovery, str)
            else "Microsoft's instance discovery endpoint (login.microsoftonline.com)"
        )
        return (
            f"msal's instance discovery for the authority {self.authority} failed ({why}) at "
            f"{endpoint}; the authority itself was not asked. For a private, sovereign or test "
            "authority pass instance_discovery=False (or the URL of your discovery endpoint)"
        )

    def _call(self, fn: Callable[[], typing.Any]) -> typing.Any:
        try:
            return fn()
        except MailError:
            raise
        except OSError as exc:  # requests.RequestException, or a bad CA bundle path
            msg = f"{self._what}: cannot reach the identity provider ({type(exc).__name__})"
            raise TokenError(msg) from exc
        except ValueError as exc:
            raise TokenError(f"{self._what} failed: {type(exc).__name__}") from exc

    def _redact(self) -> tuple[str, ...]:
        """Secret values an error text must never show (the client secret)."""
        return ()

    def _to_token(self, result: Mapping[str, typing.Any] | None) -> AccessToken:
        if not result or "access_token" not in result:
            raise _token_error(self._what, result or {"error": "no_token"}, self._redact())
        expires_at: float | None = None
        if result.get("expires_in") is not None:
            expires_at = self._clock() + float(result["expires_in"])
        elif result.get("expires_on") is not None:
            expires_at = float(result["expires_on"])
        if self._cache_file is not None:
            self._cache_file.save()
        return AccessToken(Secret(str(result["access_token"])), expires_at)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(authority={self.authority!r}, client_id={self.client_id!r}, "
            f"username={self.username!r})"
        )


class MsalAppOnlyProvider(_MsalProvider):
    """App-only (client credentials) tokens for Exchange Online SMTP AUTH.

    Args:
        tenant: the directory (tenant) id or a verified domain; ignored when ``authority`` is given.
        client_id: the app registration's application id.
        credential: a client secret (``str``/``Secret``) or a :class:`CertificateCredential`.
        username: the mailbox to send as (the XOAUTH2 ``user=``); app-only tokens carry no user.
        scopes: defaults to ``https://outlook.office365.com/.default``.
        authority_host: the cloud's login host (default ``https://login.microsoftonline.com``).
        authority: a full authority URL overriding ``authority_host``/``tenant``.
        cache: a :class:`MsalTokenCacheFile` or a path for one; ``None`` keeps msal's memory cache.
        http_client: a ``requests.Session`` for msal (proxies, CA bundle).
        instance_discovery: msal's pass-through: ``False`` for private/sovereign/test
            authorities, or the URL of another instance discovery endpoint.
        validate_authority: msal's pass-through.
        certificate_thumbprint: ``"sha1"`` or ``"sha256"`` (see
            :meth:`CertificateCredential.to_msal`).
        send_certificate_chain: send ``x5c`` (subject-name/issuer authentication).
        clock: converts msal's relative ``expires_in`` to an absolute time.

    Raises:
        ConfigurationError: a missing/invalid tenant or client id, or a multi-tenant authority
            (``common``/``organizations`` cannot issue app-only tokens).
    """

    _what = "client credentials token request"

    def __init__(
        self,
        tenant: str | None,
        client_id: str,
        credential: SecretLike | CertificateCredential,
        *,
        username: str | None = None,
        scopes: Sequence[str] = (APP_ONLY_SCOPE,),
        authority_host: str = DEFAULT_AUTHORITY_HOST,
        authority: str | None = None,
        cache: MsalTokenCacheFile | str | os.PathLike[str] | None = None,
        http_client: requests.Session | None = None,
        instance_discovery: bool | str | None = None,
        validate_authority: bool = True,
        certificate_thumbprint: str = "sha1",
        send_certificate_chain: bool = False,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(
            tenant,
            client_id,
            scopes=scopes,
            username=username,
            authority_host=authority_host,
            authority=authority,
            cache=cache,
            http_client=http_client,
            instance_discovery=instance_discovery,
            validate_authority=validate_authority,
            clock=clock,
        )
        last = self.authority.rstrip("/").rsplit("/", 1)[-1].lower()
        if last in ("common", "organizations", "consumers"):
            raise ConfigurationError(f"app-only tokens need a specific tenant, not {last!r}")
        self._thumbprint = certificate_thumbprint
        self._send_chain = send_certificate_chain
        self._credential: Secret | CertificateCredential
        if isinstance(credential, CertificateCredential):
            # Validate the options now, but keep the credential itself: msal's dict holds the
            # private key in clear text, so it is built only when the application is created.
            credential.to_msal(thumbprint=certificate_thumbprint, send_chain=send_certificate_chain)
            self._credential = credential
        else:
            secret = as_secret(credential)
            if not secret:
                raise ConfigurationError("the client secret is empty")
            self._credential = secret

    def _redact(self) -> tuple[str, ...]:
        cred = self._credential
        return (cred.reveal(),) if isinstance(cred, Secret) else ()

    def _create_app(self) -> typing.Any:
        cred = self._credential
        client_credential: typing.Any = (
            cred.reveal()
            if isinstance(cred, Secret)
            else cred.to_msal(thumbprint=self._thumbprint, send_chain=self._send_chain)
        )
        return msal.ConfidentialClientApplication(
            self.client_id, client_credential=client_credential, **self._app_kwargs()
        )

    def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        """Return an app-only token, from msal's cache unless expiring or ``force_refresh``.

        msal refuses ``force_refresh`` for client credentials, so a forced refresh first removes
        this client's cached app tokens (``remove_tokens_for_client``) and then acquires anew.

        Raises:
            TokenError: the authority refused (``error``/``correlation_id`` set) or is unreachable.
            ConfigurationError: msal rejected the configuration during discovery.
        """
        with self._lock:
            app = self._application()
            if force_refresh:
                app.remove_tokens_for_client()
            result = self._call(lambda: app.acquire_token_for_client(scopes=self.scopes))
            return self._to_token(result)


class MsalDeviceCodeProvider(_MsalProvider):
    """Delegated tokens: device-code sign-in once, then silent refresh from the token cache.

    Args:
        tenant: directory id or domain (``organizations`` works for delegated sign-in).
        client_id: the (public client) app registration's id.
        prompt: called with a :class:`DeviceCodePrompt` when the user must sign in.
        username: the account to use from the cache (also the XOAUTH2 ``user=``); when ``None``,
            the first cached account, then the account that signs in.
        scopes: defaults to ``https://outlook.office.com/SMTP.Send``.
        authority_host, authority, cache, http_client, instance_discovery, validate_authority,
        clock: as for :class:`MsalAppOnlyProvider`. Use a ``cache`` file, or every process start
            will prompt again.
        allow_prompt: when False, a missing/expired sign-in raises instead of prompting.
    """

    _what = "delegated token request"

    def __init__(
        self,
        tenant: str | None,
        client_id: str,
        *,
        prompt: Callable[[DeviceCodePrompt], None],
        username: str | None = None,
        scopes: Sequence[str] = (DELEGATED_SCOPE,),
        authority_host: str = DEFAULT_AUTHORITY_HOST,
        authority: str | None = None,
        cache: MsalTokenCacheFile | str | os.PathLike[str] | None = None,
        http_client: requests.Session | None = None,
        instance_discovery: bool | str | None = None,
        validate_authority: bool = True,
        allow_prompt: bool = True,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(
            tenant,
            client_id,
            scopes=scopes,
            username=username,
            authority_host=authority_host,
            authority=authority,
            cache=cache,
            http_client=http_client,
            instance_discovery=instance_discovery,
            validate_authority=validate_authority,
            clock=clock,
        )
        self._prompt = prompt
        self._allow_prompt = allow_prompt

    def _create_app(self) -> typing.Any:
        return msal.PublicClientApplication(self.client_id, **self._app_kwargs())

    def _silent(self, app: typing.Any, force_refresh: bool) -> typing.Any:
        # msal returns account dicts (str keys: "username", "home_account_id"...).
        accounts = typing.cast(
            "list[dict[str, typing.Any]]",
            app.get_accounts(username=self.username) if self.username else app.get_accounts(),
        )
        if not accounts:
            return None
        account = accounts[0]
        result = self._call(
            lambda: app.acquire_token_silent_with_error(
                self.scopes, account=account, force_refresh=force_refresh
            )
        )
        if result and "access_token" in result:
            found: str | None = account.get("username")
            self.username = found or self.username
        return result

    def _device_flow(self, app: typing.Any) -> typing.Any:
        flow = self._call(lambda: app.initiate_device_flow(scopes=self.scopes))
        if "user_code" not in flow:
            raise _token_error("device code request", flow)
        expires_at = flow.get("expires_at")
        self._prompt(
            DeviceCodePrompt(
                message=str(flow.get("message", "")),
                user_code=str(flow["user_code"]),
                verification_uri=str(flow.get("verification_uri", "")),
                expires_at=float(expires_at) if expires_at is not None else None,
            )
        )
        result = self._call(lambda: app.acquire_token_by_device_flow(flow))
        if result and "access_token" in result:
            claims = typing.cast("dict[str, typing.Any]", result.get("id_token_claims") or {})
            preferred: str | None = claims.get("preferred_username")
            self.username = preferred or self.username
        return result

    def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        """Return a delegated token: silently when possible, else via the device-code prompt.

        Args:
            force_refresh: redeem the refresh token even if the cached access token is valid.

        Raises:
            TokenError: sign-in failed, was refused, or is needed while ``allow_prompt`` is False.
            ConfigurationError: msal rejected the configuration during discovery.
        """
        with self._lock:
            app = self._application()
            result = self._silent(app, force_refresh)
            if result and "access_token" in result:
                return self._to_token(result)
            if not self._allow_prompt:
                raise _token_error(self._what, result or {"error": "interaction_required"})
            return self._to_token(self._device_flow(app))
