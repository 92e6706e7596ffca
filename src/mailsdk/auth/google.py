"""google-auth token provider for Gmail / Google Workspace SMTP AUTH (XOAUTH2).

Layer: L2 ``mailsdk.auth``, an *I/O edge* module (docs/architecture.md): refreshing performs HTTP
through google-auth. It may import ``threading``, ``datetime`` and, lazily, ``google.auth`` and
``google.oauth2`` (the optional extra ``mailsdk[google]``); it may import L0 and
:mod:`mailsdk.auth.tokens`. It must never import ``msal``, ``mailsdk.protocol``, ``esmtp``,
``flows``, ``transport`` or ``client``.

Gmail's SMTP server accepts the scope ``https://mail.google.com/`` only. Two ways to get it:

* a user's OAuth client credentials with a refresh token
  (:meth:`GoogleTokenProvider.from_authorized_user_info`);
* a service account with domain-wide delegation impersonating the mailbox ``subject``
  (:meth:`GoogleTokenProvider.from_service_account_info` / ``_file``): a JWT-bearer grant,
  RFC 7523 §2.1.
"""

from __future__ import annotations

import datetime
import os
import threading
import typing
from collections.abc import Mapping

from mailsdk._secret import Secret
from mailsdk.auth.tokens import AccessToken
from mailsdk.errors import ConfigurationError, TokenError

if typing.TYPE_CHECKING:
    import requests

__all__ = ["GMAIL_SCOPE", "GoogleTokenProvider"]

GMAIL_SCOPE: typing.Final = "https://mail.google.com/"
_INSTALL_HINT: typing.Final = "google-auth is not installed: pip install 'mailsdk[google]'"


def _require_google() -> None:
    """Import google-auth's transport, or explain how to install it."""
    try:
        import google.auth.transport.requests  # noqa: F401  # pyright: ignore[reportUnusedImport]
    except ImportError as exc:
        raise ConfigurationError(_INSTALL_HINT) from exc


def _expiry_to_posix(expiry: datetime.datetime | None) -> float | None:
    """google-auth keeps ``expiry`` as a naive UTC datetime."""
    if expiry is None:
        return None
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=datetime.UTC)
    return expiry.timestamp()


class GoogleTokenProvider:
    """Wraps google-auth credentials as a :class:`~mailsdk.auth.tokens.TokenProvider`.

    The credentials are refreshed (under a lock, so one refresh at a time) when they have no
    token, google-auth says they are no longer valid, or ``force_refresh`` is asked.

    Args:
        credentials: any ``google.auth.credentials.Credentials`` that can ``refresh``.
        username: the mailbox (the XOAUTH2 ``user=``); service accounts default to ``subject``.
        session: the ``requests.Session`` used for refreshing (proxies, CA bundle).

    Raises:
        ConfigurationError: google-auth is not installed.
    """

    def __init__(
        self,
        credentials: typing.Any,
        *,
        username: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        _require_google()
        self._credentials = credentials
        self.username = username
        self._session = session
        self._lock = threading.Lock()

    @classmethod
    def from_service_account_info(
        cls,
        info: Mapping[str, typing.Any],
        *,
        subject: str,
        scopes: tuple[str, ...] = (GMAIL_SCOPE,),
        session: requests.Session | None = None,
    ) -> GoogleTokenProvider:
        """A service account with domain-wide delegation acting as the mailbox ``subject``.

        Args:
            info: the parsed service-account JSON key.
            subject: the Workspace user to impersonate (also the XOAUTH2 username).
            scopes: defaults to ``https://mail.google.com/``.
            session: the ``requests.Session`` used for the token endpoint.

        Raises:
            ConfigurationError: google-auth missing or the key info is malformed.
        """
        _require_google()
        from google.oauth2 import service_account

        try:
            factory: typing.Any = service_account.Credentials  # google-auth is partly untyped
            creds = factory.from_service_account_info(dict(info), scopes=list(scopes))
        except (ValueError, KeyError) as exc:
            msg = f"invalid service account info ({type(exc).__name__})"
            raise ConfigurationError(msg) from exc
        return cls(creds.with_subject(subject), username=subject, session=session)

    @classmethod
    def from_service_account_file(
        cls,
        path: str | os.PathLike[str],
        *,
        subject: str,
        scopes: tuple[str, ...] = (GMAIL_SCOPE,),
        session: requests.Session | None = None,
    ) -> GoogleTokenProvider:
        """Like :meth:`from_service_account_info`, reading the JSON key file at ``path``.

        Raises:
            ConfigurationError: google-auth missing, or the file unreadable or malformed.
        """
        _require_google()
        from google.oauth2 import service_account

        try:
            factory: typing.Any = service_account.Credentials
            creds = factory.from_service_account_file(os.fspath(path), scopes=list(scopes))
        except (OSError, ValueError, KeyError) as exc:
            msg = f"cannot load service account file {os.fspath(path)!r} ({type(exc).__name__})"
            raise ConfigurationError(msg) from exc
        return cls(creds.with_subject(subject), username=subject, session=session)

    @classmethod
    def from_authorized_user_info(
        cls,
        info: Mapping[str, typing.Any],
        *,
        username: str | None = None,
        scopes: tuple[str, ...] = (GMAIL_SCOPE,),
        token_uri: str | None = None,
        session: requests.Session | None = None,
    ) -> GoogleTokenProvider:
        """A user's OAuth client (``client_id``/``client_secret``/``refresh_token``).

        Args:
            info: the authorized-user JSON (as written by google-auth-oauthlib or gcloud).
            username: the user's address, if known (the XOAUTH2 ``user=``).
            scopes: defaults to ``https://mail.google.com/``.
            token_uri: a token endpoint overriding Google's (google-auth ignores the one in
                ``info``).
            session: the ``requests.Session`` used for the token endpoint.

        Raises:
            ConfigurationError: google-auth missing or a required field absent.
        """
        _require_google()
        from google.oauth2 import credentials

        try:
            factory: typing.Any = credentials.Credentials
            creds = factory.from_authorized_user_info(dict(info), list(scopes))
            if token_uri is not None:
                creds = creds.with_token_uri(token_uri)
        except (ValueError, KeyError) as exc:
            msg = f"invalid authorized user info ({type(exc).__name__})"
            raise ConfigurationError(msg) from exc
        return cls(creds, username=username, session=session)

    def _refresh(self) -> None:
        import google.auth.exceptions
        import google.auth.transport.requests

        request = google.auth.transport.requests.Request(session=self._session)
        try:
            self._credentials.refresh(request)
        except google.auth.exceptions.RefreshError as exc:
            raise _refresh_error(exc) from exc
        except google.auth.exceptions.TransportError as exc:
            msg = f"google token refresh: cannot reach the token endpoint ({type(exc).__name__})"
            raise TokenError(msg) from exc

    def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        """Return the current access token, refreshing it when needed or forced.

        Args:
            force_refresh: refresh even if google-auth considers the token valid.

        Returns:
            The token and its expiry (POSIX seconds) as reported by google-auth.

        Raises:
            TokenError: the refresh was refused (``error``/``error_description`` set) or failed.
        """
        with self._lock:
            creds = self._credentials
            if force_refresh or not creds.valid:
                self._refresh()
            token = creds.token
            if not token:
                raise TokenError("google token refresh returned no access token")
            return AccessToken(Secret(str(token)), _expiry_to_posix(creds.expiry))

    def __repr__(self) -> str:
        return f"GoogleTokenProvider(username={self.username!r})"


def _refresh_error(exc: Exception) -> TokenError:
    """Map google-auth's RefreshError (message, response_data) onto :class:`TokenError`."""
    # google-auth passes the token endpoint's decoded JSON reply: str keys, JSON values.
    data: Mapping[str, object] = (
        typing.cast("Mapping[str, object]", exc.args[1])
        if len(exc.args) > 1 and isinstance(exc.args[1], Mapping)
        else {}
    )
    error = str(data.get("error") or "refresh_failed")
    description = data.get("error_description")
    description = str(description) if description is not None else None
    message = f"google token refresh failed: {error}"
    if description:
        message += f": {description.splitlines()[0]}"
    return TokenError(message, error=error, error_description=description)
