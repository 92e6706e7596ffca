"""Authentication, STARTTLS and whole transactions for ``mailsdk.compat.smtplib.SMTP``.

Layer: L7 (compat, private). May import ``mailsdk.transport`` (TLS settings), the sibling private
compat modules, L0 and the standard library (``smtplib`` for its exception classes only); must
never import ``mailsdk.api``.

``auth``/``login`` drive smtplib's "authobject" callables; the built-in ones answer with
mailsdk's SASL mechanisms (``_smtplib_auth``). ``sendmail`` keeps smtplib's sequence (EHLO if
needed, MAIL, one RCPT at a time, DATA) and its error rules (421 closes, other failures RSET);
for LMTP a partial delivery after DATA is reported in the refused dict (RFC 2033 §4.2).
"""

from __future__ import annotations

import base64
import contextlib
import smtplib as _std
import ssl
import typing
from collections.abc import Sequence

from mailsdk.compat import _smtplib_auth as _auth
from mailsdk.compat import _smtplib_text as _text
from mailsdk.compat._smtplib_base import Reply, SMTPBase
from mailsdk.errors import ConfigurationError
from mailsdk.flows.headers import check_message_headers
from mailsdk.transport import ClientCertificate, TlsSettings

if typing.TYPE_CHECKING:
    import email.message

__all__ = ["SMTPSession", "check_tls_args", "default_context"]


def default_context(certfile: str | None = None, keyfile: str | None = None) -> ssl.SSLContext:
    """smtplib's default client context: TLS 1.2+, certificates NOT verified (stdlib default)."""
    cert = ClientCertificate(certfile=certfile, keyfile=keyfile) if certfile else None
    try:
        return TlsSettings(verify=False, client_cert=cert).create_context()
    except ConfigurationError as exc:  # the stdlib raises the ssl/OS error itself
        raise (exc.__cause__ or exc) from None


def check_tls_args(context: object, keyfile: object, certfile: object) -> None:
    """Refuse ``context`` with ``keyfile``/``certfile``; warn that the latter are deprecated."""
    for name, value in (("keyfile", keyfile), ("certfile", certfile)):
        if context is not None and value is not None:
            raise ValueError(f"context and {name} arguments are mutually exclusive")
    if keyfile is not None or certfile is not None:
        import warnings

        warnings.warn(
            "keyfile and certfile are deprecated, use a custom context instead",
            DeprecationWarning,
            3,
        )


class SMTPSession(SMTPBase):
    """AUTH, STARTTLS, ``sendmail`` and ``send_message`` on top of :class:`SMTPBase`."""

    # -- authentication ---------------------------------------------------------------------

    def auth(
        self,
        mechanism: str,
        authobject: typing.Callable[..., str | bytes | None],
        *,
        initial_response_ok: bool = True,
    ) -> Reply:
        """Run one SASL exchange (RFC 4954) driven by ``authobject(challenge=None)``.

        Raises:
            SMTPAuthenticationError: the server refused.
            SMTPException: more than ``_MAXCHALLENGE`` challenges (a looping server).
        """
        mechanism = mechanism.upper()
        initial = authobject() if initial_response_ok else None
        self._sasl_active = True
        try:
            if initial is not None:
                response = _auth.b64_response(initial, initial=True)
                code, resp = self.docmd("AUTH", f"{mechanism} {response}")
                self._auth_challenge_count = 1
            else:
                code, resp = self.docmd("AUTH", mechanism)
                self._auth_challenge_count = 0
            while code == 334:
                self._auth_challenge_count += 1
                challenge = base64.decodebytes(resp)
                try:
                    answer = authobject(challenge)
                except Exception:
                    # RFC 4954 §4: "*" cancels, so the session stays in step (smtplib left the
                    # server waiting for an answer that never came).
                    with contextlib.suppress(_std.SMTPException):
                        self.docmd("*")
                    raise
                code, resp = self.docmd(_auth.b64_response(answer or b"", initial=False))
                if self._auth_challenge_count > self._max_challenge():
                    raise _std.SMTPException(
                        "Server AUTH mechanism infinite loop. Last response: " + repr((code, resp))
                    )
        finally:
            self._sasl_active = False
        if code in (235, 503):
            return code, resp
        raise _std.SMTPAuthenticationError(code, resp)

    def _credentials(self) -> tuple[str, str]:
        return str(self.user or ""), str(self.password or "")

    def auth_cram_md5(self, challenge: bytes | None = None) -> str | None:
        """CRAM-MD5 answer (RFC 2195) from ``user``/``password``; ``None`` without a challenge."""
        if challenge is None:
            return None
        return _auth.cram_md5_response(*self._credentials(), challenge)

    def auth_plain(self, challenge: bytes | None = None) -> str:
        """PLAIN message (RFC 4616) from ``user``/``password``."""
        return _auth.plain_response(*self._credentials())

    def auth_login(self, challenge: bytes | None = None) -> str:
        """LOGIN answer: ``user`` first, then ``password``."""
        count = 1 if challenge is None else self._auth_challenge_count
        return _auth.login_response(*self._credentials(), count)

    def login(self, user: str, password: str, *, initial_response_ok: bool = True) -> Reply:
        """Authenticate with CRAM-MD5, PLAIN or LOGIN, whichever the server offers first.

        Raises:
            SMTPHeloError: the greeting exchange failed.
            SMTPNotSupportedError: no AUTH extension.
            SMTPException: no suitable mechanism.
            SMTPAuthenticationError: every mechanism tried was refused.
        """
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("auth"):
            raise _std.SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
        advertised = self.esmtp_features["auth"].split()
        authlist = [m for m in ("CRAM-MD5", "PLAIN", "LOGIN") if m in advertised]
        if not authlist:
            raise _std.SMTPException("No suitable authentication method found.")
        self.user, self.password = user, password
        last_exception: _std.SMTPAuthenticationError | None = None
        local_failure: _auth.CredentialsNotEncodable | None = None
        for mechanism in authlist:
            method = getattr(self, "auth_" + mechanism.lower().replace("-", "_"))
            try:
                code, resp = self.auth(mechanism, method, initial_response_ok=initial_response_ok)
                if code in (235, 503):
                    return code, resp
            except _std.SMTPAuthenticationError as exc:
                last_exception = exc
            except _auth.CredentialsNotEncodable as exc:
                # This mechanism cannot carry these credentials (a CRAM-MD5 user name with a
                # space, an empty PLAIN password); smtplib would have sent them, been refused and
                # tried the next mechanism, so do the same.
                local_failure = exc
        if last_exception is not None:
            raise last_exception
        if local_failure is not None:
            raise local_failure
        raise _std.SMTPException(  # pragma: no cover - auth() returns 235/503 or raises
            "No suitable authentication method found."
        )

    def starttls(
        self,
        keyfile: str | None = None,
        certfile: str | None = None,
        context: ssl.SSLContext | None = None,
    ) -> Reply:
        """STARTTLS (RFC 3207), then forget everything learnt before TLS (§4.2).

        Without ``context`` certificates are not verified (smtplib's default); pass
        ``context=ssl.create_default_context()`` to verify.

        Raises:
            SMTPNotSupportedError: STARTTLS not advertised.
            SMTPResponseException: the server refused.
        """
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("starttls"):
            raise _std.SMTPNotSupportedError("STARTTLS extension not supported by server.")
        resp, reply = self.docmd("STARTTLS")
        if resp != 220:
            raise _std.SMTPResponseException(resp, reply)
        check_tls_args(context, keyfile, certfile)
        if context is None:
            context = default_context(certfile, keyfile)
        assert self.sock is not None
        self.sock = context.wrap_socket(self.sock, server_hostname=self._host)
        # RFC 3207 §4.2: discard what was learnt (and anything buffered) before TLS.
        self.file = None
        self.helo_resp = None
        self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        return resp, reply

    # -- whole transactions -----------------------------------------------------------------

    def sendmail(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: str | bytes,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, Reply]:
        """Send one message; return the refused recipients ``{address: (code, message)}``.

        Raises:
            SMTPHeloError: the greeting exchange failed.
            SMTPRecipientsRefused: every recipient was refused (or one got 421).
            SMTPSenderRefused: MAIL FROM was refused.
            SMTPDataError: the message was refused.
            SMTPNotSupportedError: SMTPUTF8 requested but not advertised.
        """
        self.ehlo_or_helo_if_needed()
        recipients = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
        # Refuse CR/LF in any address or option before MAIL, so no half-built transaction is
        # left open on the server (RFC 5321 §2.3.8).
        for argument in (from_addr, *recipients, *mail_options, *rcpt_options):
            _text.checked_address(argument, what="argument")
        body = _text.message_bytes(msg)
        esmtp_opts: list[str] = []
        if self.does_esmtp:
            if self.has_extn("size"):
                esmtp_opts.append(f"size={len(body)}")
            esmtp_opts.extend(mail_options)
        code, resp = self.mail(from_addr, esmtp_opts)
        if code != 250:
            self._close_or_rset(code)
            raise _std.SMTPSenderRefused(code, resp, from_addr)
        senderrs: dict[str, Reply] = {}
        for each in recipients:
            code, resp = self.rcpt(each, rcpt_options)
            if code not in (250, 251):
                senderrs[each] = (code, resp)
            if code == 421:
                self.close()
                raise _std.SMTPRecipientsRefused(senderrs)
        if len(senderrs) == len(recipients):
            self._rset()
            raise _std.SMTPRecipientsRefused(senderrs)
        code, resp = self.data(body)
        per_rcpt = self.lmtp_replies
        if code != 250 and any(reply[0] == 250 for reply in per_rcpt.values()):
            # LMTP partial delivery (RFC 2033 §4.2): reported like refused recipients.
            senderrs.update({r: reply for r, reply in per_rcpt.items() if reply[0] != 250})
            if any(reply[0] == 421 for reply in per_rcpt.values()):
                self.close()
            return senderrs
        if code != 250:
            self._close_or_rset(code)
            raise _std.SMTPDataError(code, resp)
        return senderrs

    def _close_or_rset(self, code: int) -> None:
        if code == 421:
            self.close()
        else:
            self._rset()

    def send_message(
        self,
        msg: email.message.Message,
        from_addr: str | None = None,
        to_addrs: str | Sequence[str] | None = None,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, Reply]:
        """Send an ``email.message.Message``, deriving the envelope from its headers.

        Sender: ``(Resent-)Sender`` or ``(Resent-)From``; recipients: ``(Resent-)To``, ``Bcc``,
        ``Cc``; ``Bcc`` headers are never transmitted. A non-ASCII envelope address adds
        ``SMTPUTF8`` and ``BODY=8BITMIME`` (RFC 6531).

        Raises:
            ValueError: more than one ``Resent-`` header block, or a header that would inject
                lines, end the header block early or hold a NUL (``InvalidInputError``, checked
                before anything is sent; smtplib would send it or raise ``HeaderParseError``).
            SMTPNotSupportedError: a non-ASCII address but no SMTPUTF8 support.
            (and whatever :meth:`sendmail` raises)
        """
        check_message_headers(msg)
        self.ehlo_or_helo_if_needed()
        prefix = _text.resent_prefix(msg)
        if from_addr is None:
            from_addr = _text.envelope_sender(msg, prefix)
        if to_addrs is None:
            to_addrs = _text.envelope_recipients(msg, prefix)
        international = _text.needs_international(from_addr, to_addrs)
        if international and not self.has_extn("smtputf8"):
            raise _std.SMTPNotSupportedError(
                "One or more source or delivery addresses require internationalized email "
                "support, but the server does not advertise the required SMTPUTF8 capability"
            )
        if international:
            mail_options = (*mail_options, "SMTPUTF8", "BODY=8BITMIME")
        flatmsg = _text.flatten_message(msg, utf8=international)
        return self.sendmail(from_addr, to_addrs, flatmsg, mail_options, rcpt_options)
