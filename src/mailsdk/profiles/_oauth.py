"""The token provider a profile's ``[oauth]`` table describes (msal, Google, a static token).

Layer: L6b (profiles, private). Imports ``mailsdk.auth`` (msal and Google providers, loaded only
for the provider a profile names) and the profile's secrets; makes no request itself (the
provider asks its authority when the first token is needed).

Secrets (client secrets, refresh tokens, access tokens) are read into a
:class:`~mailsdk.Secret` or handed to the provider; errors name the key or the file, never the
value.
"""

from __future__ import annotations

import json
import os
import pathlib
import typing
from collections.abc import Callable

from mailsdk.auth.tokens import StaticTokenProvider, TokenProvider
from mailsdk.errors import ConfigurationError
from mailsdk.profiles._file import Profile
from mailsdk.profiles._secrets import secret_from

__all__ = ["DevicePrompt", "token_provider_for_profile"]

#: Shows a device-code sign-in (an msal ``DeviceCodePrompt``: ``message``, ``user_code``...).
DevicePrompt = Callable[[typing.Any], None]


def _http_session(ca_file: str | None) -> typing.Any:
    import requests

    session = requests.Session()
    if ca_file:
        session.verify = os.path.expanduser(ca_file)
    return session


def _never_prompt(prompt: object) -> None:  # pragma: no cover - allow_prompt=False never calls it
    raise ConfigurationError("a device-code sign-in needs a person: run `mailsdk token` first")


def token_provider_for_profile(
    profile: Profile,
    user: str | None = None,
    *,
    device_prompt: DevicePrompt | None = None,
) -> tuple[TokenProvider, list[str]]:
    """The OAuth token provider a profile's ``[oauth]`` table describes, and its scopes.

    Providers: ``msal-app-only`` (client secret or certificate), ``msal-device-code``
    (delegated, from the token cache; a sign-in only with ``device_prompt``), ``google-service-
    account``, ``google-user`` (an authorized-user JSON file with a refresh token) and
    ``static`` (an access token minted elsewhere, from ``access_token_env`` or
    ``access_token_file``).

    Args:
        profile: the profile (its ``oauth`` table).
        user: the mailbox (default: the profile's ``user``).
        device_prompt: shows a device-code sign-in to a person; without it a device-code
            profile uses only its cache (``mailsdk token`` signs in) and raises
            :class:`~mailsdk.errors.TokenError` when a sign-in is needed: a program never
            waits for a person.

    Raises:
        ConfigurationError: no ``[oauth]`` table, missing keys or secrets, an unreadable file.
    """
    oauth = profile.oauth
    who = f"profile {profile.name!r}"
    if oauth is None:
        raise ConfigurationError(f"{who} has no [oauth] table")
    user = user if user is not None else profile.get("user")
    kind = str(oauth["provider"])
    scopes = [str(s) for s in oauth.get("scopes", [])]
    if kind == "static":
        token = secret_from(
            oauth.get("access_token_env"), oauth.get("access_token_file"), "access token"
        )
        if token is None:
            raise ConfigurationError(f"{who} oauth: give access_token_env or access_token_file")
        return StaticTokenProvider(token, username=user), scopes
    session = _http_session(oauth.get("ca_file"))
    if kind.startswith("msal-"):
        return _msal(who, oauth, user, scopes, session, device_prompt=device_prompt)
    return _google(who, oauth, user, scopes, session)


def _msal(
    who: str,
    oauth: dict[str, typing.Any],
    user: str | None,
    scopes: list[str],
    session: typing.Any,
    *,
    device_prompt: DevicePrompt | None,
) -> tuple[TokenProvider, list[str]]:
    from mailsdk.auth import msal as m

    client_id = oauth.get("client_id")
    if not client_id:
        raise ConfigurationError(f"{who} oauth: client_id is required")
    common: dict[str, typing.Any] = {
        "authority": oauth.get("authority"),
        "http_client": session,
        "cache": os.path.expanduser(oauth["cache_file"]) if oauth.get("cache_file") else None,
    }
    if "instance_discovery" in oauth:
        common["instance_discovery"] = oauth["instance_discovery"]
    if oauth["provider"] == "msal-app-only":
        scopes = scopes or [m.APP_ONLY_SCOPE]
        credential: typing.Any
        if oauth.get("certificate_file"):
            credential = m.CertificateCredential.load(os.path.expanduser(oauth["certificate_file"]))
        else:
            credential = secret_from(
                oauth.get("client_secret_env"), oauth.get("client_secret_file"), "client secret"
            )
            if credential is None:
                raise ConfigurationError(
                    f"{who} oauth: give client_secret_env, client_secret_file or certificate_file"
                )
        app = m.MsalAppOnlyProvider(
            oauth.get("tenant"), client_id, credential, username=user, scopes=scopes, **common
        )
        return app, scopes
    scopes = scopes or [m.DELEGATED_SCOPE]
    delegated = m.MsalDeviceCodeProvider(
        oauth.get("tenant") or "organizations",
        client_id,
        prompt=device_prompt or _never_prompt,
        allow_prompt=device_prompt is not None,
        username=user,
        scopes=scopes,
        **common,
    )
    return delegated, scopes


def _google(
    who: str, oauth: dict[str, typing.Any], user: str | None, scopes: list[str], session: typing.Any
) -> tuple[TokenProvider, list[str]]:
    from mailsdk.auth import google as g

    scopes = scopes or [g.GMAIL_SCOPE]
    if oauth["provider"] == "google-service-account":
        path = oauth.get("service_account_file")
        subject = oauth.get("subject") or user
        if not path or not subject:
            raise ConfigurationError(
                f"{who} oauth: service_account_file and subject (or user) are required"
            )
        provider = g.GoogleTokenProvider.from_service_account_file(
            os.path.expanduser(path), subject=subject, scopes=tuple(scopes), session=session
        )
        return provider, scopes
    path = oauth.get("authorized_user_file")
    if not path:
        raise ConfigurationError(f"{who} oauth: authorized_user_file is required")
    try:
        info = json.loads(pathlib.Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        # never the exception text: a JSON error quotes the document (the refresh token)
        raise ConfigurationError(f"cannot read {path} ({type(exc).__name__})") from None
    provider = g.GoogleTokenProvider.from_authorized_user_info(
        info, username=user, scopes=tuple(scopes), token_uri=oauth.get("token_uri"), session=session
    )
    return provider, scopes
