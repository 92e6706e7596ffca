"""Reading a batch: CSV or JSONL rows with a body template, or a folder of .eml files.

Layer: L8 command line (private). Every row is rendered *before* anything is sent, so a bad row
(a missing template variable, no recipient) is a usage error that names the row and sends
nothing.

Rows: ``to`` (required; several addresses separated by ``,`` or ``;``, or a JSON list), optional
``cc``, ``bcc``, ``subject``, ``from`` and ``key`` (the idempotency key echoed in the report;
default ``row-N``); every column but ``bcc`` is also a template variable. Templates use ``$name`` or
``${name}`` (:class:`string.Template`); ``$$`` is a literal dollar.
"""

from __future__ import annotations

import csv
import email
import email.policy
import email.utils
import io
import json
import pathlib
import string
import typing
from email.message import EmailMessage

from mailsdk.errors import ConfigurationError
from mailsdk.flows import Outgoing

__all__ = ["load_items"]


def _addresses(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        items = typing.cast("list[object]", value)  # decoded JSON: any values
        return [str(v).strip() for v in items if str(v).strip()]
    text = str(value).replace(";", ",")
    return [addr for _, addr in email.utils.getaddresses([text]) if addr]


def _render(template: str, variables: dict[str, str], where: str, what: str) -> str:
    try:
        return string.Template(template).substitute(variables)
    except KeyError as exc:
        raise ConfigurationError(
            f"{where}: the {what} uses ${exc.args[0]}, not in the row"
        ) from None
    except ValueError as exc:
        raise ConfigurationError(f"{where}: bad placeholder in the {what} ({exc})") from None


def _row_item(
    row: dict[str, typing.Any], n: int, *, body: str, subject: str | None, sender: str | None
) -> Outgoing:
    where = f"row {n}"
    to, cc, bcc = (_addresses(row.get(k)) for k in ("to", "cc", "bcc"))
    if not (to or cc or bcc):
        raise ConfigurationError(f"{where}: no recipient (a 'to' column is required)")
    # every column is a variable except bcc (hidden recipients stay out of the text)
    variables = {k: "" if v is None else str(v) for k, v in row.items() if k != "bcc"}
    variables.update({k: ", ".join(_addresses(row.get(k))) for k in ("to", "cc") if row.get(k)})
    from_ = str(row.get("from") or sender or "")
    if not from_:
        raise ConfigurationError(f"{where}: no sender (give --from or a 'from' column)")
    subject_template = str(row.get("subject") or subject or "")
    rendered_subject = _render(subject_template, variables, where, "subject")
    # a line break in a header (from a row's value) would be a header injection
    for what, value in (("the from address", from_), ("the subject", rendered_subject)):
        if "\r" in value or "\n" in value:
            raise ConfigurationError(f"{where}: {what} contains a line break")
    msg = EmailMessage()
    msg["From"] = from_
    if to:
        msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = rendered_subject
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid(domain=from_.rpartition("@")[2] or None)
    msg.set_content(_render(body, variables, where, "body template"))
    key = str(row.get("key") or f"row-{n}")
    return Outgoing(msg, recipients=(*to, *cc, *bcc), key=key)


def _rows_csv(text: str) -> list[dict[str, typing.Any]]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        return []
    names = [f.strip().lower() for f in reader.fieldnames]
    if len(set(names)) != len(names):
        raise ConfigurationError("the CSV header repeats a column")
    rows: list[dict[str, typing.Any]] = []
    for raw in reader:
        if None in raw:
            raise ConfigurationError(f"row {len(rows) + 1}: more fields than the header has")
        rows.append({k.strip().lower(): v for k, v in raw.items()})
    return rows


def _rows_jsonl(text: str) -> list[dict[str, typing.Any]]:
    rows: list[dict[str, typing.Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            raise ConfigurationError(f"line {n}: not valid JSON") from None
        if not isinstance(value, dict):
            raise ConfigurationError(f"line {n}: each line must be a JSON object")
        row = typing.cast("dict[str, object]", value)  # a decoded JSON object: str keys
        extra = row.pop("vars", None)
        if isinstance(extra, dict):
            row.update(typing.cast("dict[str, object]", extra))
        rows.append({str(k).lower(): v for k, v in row.items()})
    return rows


def _eml_items(folder: pathlib.Path) -> list[Outgoing]:
    items: list[Outgoing] = []
    for path in sorted(folder.glob("*.eml")):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from None
        msg = email.message_from_bytes(data, policy=email.policy.SMTP)
        if not any(msg.get(h) for h in ("To", "Cc", "Bcc")):
            raise ConfigurationError(f"{path.name}: no To, Cc or Bcc header")
        items.append(Outgoing(msg, key=path.name))
    if not items:
        raise ConfigurationError(f"{folder}: no .eml files")
    return items


def load_items(
    source: pathlib.Path,
    *,
    template: pathlib.Path | None,
    subject: str | None,
    sender: str | None,
) -> list[Outgoing]:
    """The messages of a batch, in input order (see the module docstring).

    Raises:
        ConfigurationError: unreadable input, a bad row, a missing template.
    """
    if source.is_dir():
        if template is not None:
            raise ConfigurationError("a folder of .eml files takes no --template")
        return _eml_items(source)
    try:
        text = source.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {source} ({type(exc).__name__})") from None
    if template is None:
        raise ConfigurationError("rows need a body: give --template PATH")
    try:
        body = template.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {template} ({type(exc).__name__})") from None
    suffix = source.suffix.lower()
    if suffix == ".csv":
        rows = _rows_csv(text)
    elif suffix in (".jsonl", ".ndjson"):
        rows = _rows_jsonl(text)
    else:
        raise ConfigurationError(f"{source}: use a .csv or .jsonl file, or a folder of .eml files")
    if not rows:
        raise ConfigurationError(f"{source}: no rows")
    items = [
        _row_item(row, n, body=body, subject=subject, sender=sender)
        for n, row in enumerate(rows, 1)
    ]
    keys = [i.key for i in items]
    if len(set(keys)) != len(keys):
        raise ConfigurationError(f"{source}: the 'key' column must be unique")
    return items
