"""``mailsdk send``: one message, like swaks or ``sendmail -t``.

Layer: L8 command line. The message comes from the options (``--from``, ``--to``, ``--subject``,
``--body``/``--body-file``/stdin, ``--html``, ``--attach``) or, with ``-t``, whole from stdin
with the recipients read from its To/Cc/Bcc headers (Bcc is never transmitted).
"""

from __future__ import annotations

import email
import email.message
import email.policy
import email.utils
import mimetypes
import pathlib
import sys
import typing
from email.message import EmailMessage

import click

from mailsdk.builder import ClientBuilder
from mailsdk.cli._connect import builder_for
from mailsdk.cli._exit import ExitCode
from mailsdk.cli._options import (
    Common,
    command_body,
    common_options,
    connection_options,
    output_options,
    reply_json,
)
from mailsdk.cli._terminal import emit_json, safe
from mailsdk.errors import ConfigurationError
from mailsdk.flows import SendResult

__all__ = ["build_message", "result_json", "send_command"]


def _read_stdin() -> bytes:
    if sys.stdin.isatty():
        raise ConfigurationError("give --body, --body-file or pipe the body on stdin")
    return sys.stdin.buffer.read()


def build_message(
    *,
    sender: str,
    to: typing.Sequence[str],
    cc: typing.Sequence[str],
    bcc: typing.Sequence[str],
    subject: str | None,
    body: str,
    html: str | None,
    attachments: typing.Sequence[str],
) -> EmailMessage:
    """Compose the message the options describe (Date and Message-ID included).

    Raises:
        ConfigurationError: an address or the subject contains a line break (a header
            injection such as ``--subject $'Hi\\r\\nBcc: x'``), or an attachment is unreadable.
    """
    fields = {"--from": [sender], "--to": to, "--cc": cc, "--bcc": bcc, "--subject": [subject]}
    for option, values in fields.items():
        if any(v is not None and ("\r" in v or "\n" in v) for v in values):
            raise ConfigurationError(f"{option} must not contain a line break")
    msg = EmailMessage()
    msg["From"] = sender
    if to:
        msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    if bcc:
        msg["Bcc"] = ", ".join(bcc)  # used for the envelope, stripped before sending
    if subject is not None:
        msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(localtime=True)
    domain = sender.rpartition("@")[2].strip("> ") or None
    msg["Message-ID"] = email.utils.make_msgid(domain=domain)
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for path_text in attachments:
        path = pathlib.Path(path_text)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"cannot read attachment {path}: {exc.strerror}") from None
        ctype, encoding = mimetypes.guess_type(path.name)
        if ctype is None or encoding is not None:
            ctype = "application/octet-stream"
        maintype, subtype = ctype.split("/", 1)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=path.name)
    return msg


def result_json(result: SendResult) -> dict[str, typing.Any]:
    """A send result as JSON."""
    return {
        "status": "accepted" if result.ok else "partial",
        "sender": result.sender,
        "accepted": list(result.accepted),
        "refused": {r: reply_json(reply) for r, reply in result.refused.items()},
        "reply": reply_json(result.reply),
        "queue_id": result.queue_id,
        "size": result.size,
    }


def print_result(result: SendResult) -> None:
    """The human-readable report of one send (server text escaped)."""
    for rcpt in result.accepted:
        reply = result.recipient_replies.get(rcpt)
        click.echo(f"accepted  {safe(rcpt):<32} {safe(reply) if reply else ''}")
    for rcpt, reply in result.refused.items():
        click.echo(f"REFUSED   {safe(rcpt):<32} {safe(reply)}")
    queue = f", queue id {safe(result.queue_id)}" if result.queue_id else ""
    click.echo(f"sent      {result.size} bytes: {safe(result.reply)}{queue}")


def _message(
    common: Common, builder: ClientBuilder, read_recipients: bool, **o: typing.Any
) -> EmailMessage | email.message.Message:
    if read_recipients:
        if o["to"] or o["cc"] or o["bcc"]:
            raise ConfigurationError(
                "-t reads the recipients from the message; do not combine it with --to/--cc/--bcc"
            )
        raw = _read_stdin()
        return email.message_from_bytes(raw, policy=email.policy.SMTP)
    if not (o["to"] or o["cc"] or o["bcc"]):
        raise ConfigurationError("give at least one --to, --cc or --bcc (or -t)")
    profile = common.profile()
    sender = o["sender"] or profile.get("from") or (builder.auth.username if builder.auth else None)
    if not sender:
        raise ConfigurationError("give --from (or a profile's from)")
    if o["body"] is not None and o["body_file"] is not None:
        raise ConfigurationError("give --body or --body-file, not both")
    if o["body"] is not None:
        body = str(o["body"])
    elif o["body_file"] is not None:
        body = _read_text(o["body_file"])
    else:
        body = _read_stdin().decode("utf-8", "replace")
    html = _read_text(o["html"]) if o["html"] is not None else None
    return build_message(
        sender=sender,
        to=o["to"],
        cc=o["cc"],
        bcc=o["bcc"],
        subject=o["subject"],
        body=body,
        html=html,
        attachments=o["attach"],
    )


def _read_text(path: str) -> str:
    if path == "-":
        return _read_stdin().decode("utf-8", "replace")
    try:
        return pathlib.Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path} ({type(exc).__name__})") from None


@click.command("send")
@common_options
@connection_options
@output_options
@click.option("--from", "sender", metavar="ADDR", help="Sender (From and MAIL FROM).")
@click.option("--to", multiple=True, metavar="ADDR", help="Recipient (repeatable).")
@click.option("--cc", multiple=True, metavar="ADDR", help="Cc recipient (repeatable).")
@click.option("--bcc", multiple=True, metavar="ADDR", help="Bcc recipient (repeatable, hidden).")
@click.option("--subject", metavar="TEXT", help="Subject line.")
@click.option("--body", metavar="TEXT", help="Plain-text body (else --body-file, else stdin).")
@click.option("--body-file", metavar="PATH", help="Read the plain-text body from PATH.")
@click.option("--html", metavar="PATH", help="Add an HTML alternative read from PATH.")
@click.option("--attach", multiple=True, metavar="PATH", help="Attach a file (repeatable).")
@click.option(
    "-t",
    "read_recipients",
    is_flag=True,
    help="Read a whole message from stdin; recipients from its To/Cc/Bcc (like sendmail -t).",
)
@command_body
def send_command(common: Common, read_recipients: bool, **options: typing.Any) -> int:
    """Send one message.

    \b
    Examples:
      mailsdk send --server mail.example.com:587 --user me@example.com \\
          --from me@example.com --to you@example.net --subject Hi --body Hello
      mailsdk send --profile work -t < message.eml
    """
    builder = builder_for(common.connection, common.profile())
    message = _message(common, builder, read_recipients, **options)
    with builder.build().connect() as session:
        result = session.send_message(
            message, sender=options["sender"] if read_recipients else None
        )
    if common.json:
        emit_json(result_json(result))
    else:
        print_result(result)
    return ExitCode.OK if result.ok else ExitCode.PARTIAL
