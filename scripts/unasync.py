#!/usr/bin/env python3
"""Generate the blocking facades from their asyncio originals; ``--check`` fails when stale.

Usage: ``python scripts/unasync.py`` rewrites the generated files (``TARGETS``); ``--check``
prints a diff and exits 1 when one differs from what its asyncio original gives. The rewrite
works on tokens, so strings are never rewritten as code: ``async``/``await`` go, ``NAMES`` and
``CONSTRUCTS`` are renamed, ``UNWRAP`` calls unwrapped, ``PHRASES`` reword docstrings and
comments, and ``# unasync:`` pragmas (``drop``, ``drop NAME``, ``becomes CODE``, ``add CODE``,
``async-only``/``sync-only`` ... ``end``) mark the lines that differ. Output that still speaks
asyncio (``LEAKS``), a stale per-file phrase or a misplaced pragma is an error. The rules and
how to edit a facade: docs/architecture.md, "Generated code".
"""

from __future__ import annotations

import argparse
import difflib
import io
import re
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = (
    "# Generated from {source} by scripts/unasync.py: do not edit.\n"
    "# Edit the asyncio original, then run `python scripts/unasync.py` (docs/architecture.md).\n"
)

#: Identifiers renamed in code and, as whole words, in docstrings and comments.
NAMES = {
    "AsyncBatchRun": "BatchRun",
    "AsyncClient": "Client",
    "AsyncConnectionLimiter": "ConnectionLimiter",
    "AsyncDriver": "SyncDriver",
    "AsyncGenerator": "Generator",
    "AsyncIterable": "Iterable",
    "AsyncIterator": "Iterator",
    "AsyncLMTPClient": "LMTPClient",
    "AsyncPool": "Pool",
    "AsyncRateLimiter": "RateLimiter",
    "AsyncSession": "Session",
    "StopAsyncIteration": "StopIteration",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "_async_batch": "_sync_batch",
    "_async_driver": "_sync_driver",
    "_async_express": "_sync_express",
    "aclose": "close",
    "aiter": "iter",
    "alocal_hostname": "local_hostname",
    "anext": "next",
    "async_pool": "sync_pool",
    "open_stream_async": "open_stream",
}
#: asyncio constructs (dotted names, matched token by token) and their blocking equivalents.
CONSTRUCTS = {
    "asyncio.Condition": "threading.Condition",
    "asyncio.Event": "threading.Event",
    "asyncio.Lock": "threading.Lock",
    "asyncio.Queue": "queue.SimpleQueue",
    "asyncio.sleep": "time.sleep",
    "contextlib.asynccontextmanager": "contextlib.contextmanager",
}
#: Calls that only exist to be awaited: ``name(x)`` becomes ``x`` in the blocking file.
UNWRAP = {"asyncio.shield", "maybe_await"}
#: Wording of docstrings and comments, for every file: a file's own phrases come first, the
#: first phrase or name that matches wins, and a replacement is final (not renamed again).
PHRASES = (
    ("``async with", "``with"),
    ("``async for", "``for"),
    ("``await ", "``"),
    ("An asyncio ", "A blocking "),
    ("an asyncio ", "a blocking "),
    ("asyncio ", "blocking "),
    ("An asynchronous iterator", "An iterator"),
    ("an asynchronous iterator", "an iterator"),
    ("task-safe", "thread-safe"),
    ("between tasks", "between threads"),
    ("task alone", "thread alone"),
    ("worker task", "worker thread"),
    ("consumer's task", "consumer's thread"),
)
#: What a blocking file must not say (in code, docstrings or comments) once generated.
LEAKS = re.compile(r"\b(?:async|await\w*|asyncio|asynchronous\w*|coroutines?|event loop|tasks?)\b")
#: Tokens that are not the code a pragma on its own line applies to.
LAYOUT = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
LAYOUT |= {tokenize.ENDMARKER}  # the end of the file: a pragma right above it lacks its line
#: Tokens whose text is prose (f-string parts are their own tokens from Python 3.12).
TEXT = {tokenize.STRING, tokenize.COMMENT, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
#: Block pragmas: their lines are left out (async-only) or uncommented (sync-only).
BLOCKS = {"async-only": "async", "sync-only": "sync"}
PRAGMA = re.compile(r"#\s*unasync:\s*(?P<verb>[\w-]+)\s*(?P<arg>.*?)\s*$")


class UnasyncError(Exception):
    """A pragma or rule that cannot be applied (the message says where)."""


@dataclass(frozen=True)
class Target:
    """One generated file: its asyncio ``source``, and the wording peculiar to it."""

    source: str
    generated: str
    phrases: tuple[tuple[str, str], ...] = ()


TARGETS = (
    Target(
        "src/mailsdk/client/async_client.py",
        "src/mailsdk/client/sync_client.py",
        phrases=(
            ("The blocking twin ``sync_client.py`` is", "This file is"),
            ("generated from this file by", "generated from ``async_client.py`` by"),
            (
                ",\n        synchronous or asynchronous (the frames already encoded are written"
                " before waiting\n        for an asynchronous source).",
                ".",
            ),
        ),
    ),
    Target(
        "src/mailsdk/client/_async_express.py",
        "src/mailsdk/client/_sync_express.py",
        phrases=(
            ("The blocking twin ``_sync_express.py`` is", "This file is"),
            ("generated from this file by", "generated from ``_async_express.py`` by"),
        ),
    ),
    Target(
        "src/mailsdk/pool/async_pool.py",
        "src/mailsdk/pool/sync_pool.py",
        phrases=(
            (
                "The blocking twin ``sync_pool.py`` is generated from this file",
                "This file is generated from ``async_pool.py``",
            ),
            (
                "Any number\n    of tasks of one event loop may call",
                "Any number\n    of threads may call",
            ),
            (", sync or async", ""),
            ("(cancelled, Ctrl-C, a bug)", "(Ctrl-C, a bug)"),
            (  # only the blocking pool can spread a batch over processes
                "            ordered: yield outcomes in input order instead of completion order.\n"
                "\n        Returns:\n"
                "            The :class:`AsyncBatchRun`, an asynchronous iterator of\n"
                "            :class:`~mailsdk.SendOutcome` with ``report``.\n",
                "            ordered: yield outcomes in input order instead of completion order.\n"
                "            processes: spread the batch over this many forked worker processes (to"
                " use more\n"
                "                than one CPU core), each with its share of"
                " ``max_connections`` and of ``rate``\n"
                "                (a :class:`~mailsdk.batch.TokenBucket` is divided; a limiter"
                " shared across\n"
                "                processes, like the Redis one, is used as is). ``None`` or 1: this"
                " process.\n"
                "\n        Returns:\n"
                "            A :class:`BatchRun` (a :class:`ProcessBatchRun` with ``processes``):"
                " an iterator\n"
                "            of :class:`~mailsdk.SendOutcome` with ``report``.\n"
                "\n        Raises:\n"
                "            ConfigurationError: ``processes`` is not a positive int, the platform"
                " cannot\n"
                "                fork, or ``rate`` cannot be shared between processes.\n",
            ),
        ),
    ),
)


def convert(source: str, phrases: tuple[tuple[str, str], ...] = ()) -> str:
    """The blocking version of the asyncio module ``source`` (without the header)."""
    return Rewrite(source, phrases).result()


class Rewrite:
    """One module's rewrite: pragmas decide whole lines, then tokens are edited in place."""

    def __init__(self, source: str, phrases: tuple[tuple[str, str], ...]) -> None:
        self.source = source
        self.lines = source.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))
        self.tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
        # One pass over prose: the first phrase (this file's, then everyone's) or name that
        # matches wins, and a phrase's replacement is final (never renamed again).
        self.phrases = dict((*PHRASES, *phrases))
        self.unused = {old for old, _ in phrases}
        names = (rf"\b{re.escape(name)}\b" for name in sorted(NAMES, key=len, reverse=True))
        olds = (re.escape(old) for old in (*(o for o, _ in phrases), *(o for o, _ in PHRASES)))
        self.prose = re.compile("|".join((*olds, *names)))
        self.dropped: set[int] = set()  # line numbers left out
        self.becomes: dict[int, str] = {}  # line number -> its blocking code
        self.drop_names: dict[int, list[str]] = {}  # line number -> names to remove from it
        self.edits: list[tuple[int, int, str]] = []  # (start, end, text), offsets in source

    def at(self, row: int, col: int) -> int:
        return self.starts[row - 1] + col

    def result(self) -> str:
        self.plan_lines()
        self.edit_tokens()
        self.join_blank_runs()
        for row in sorted(self.dropped | set(self.becomes)):
            line = self.lines[row - 1]
            if row in self.becomes:
                text, end = self.becomes[row], len(line.rstrip("\r\n"))
                indent = len(line) - len(line.lstrip()) if text else 0
                self.edits.append((self.at(row, indent), self.at(row, end), text))
            else:
                self.edits.append((self.starts[row - 1], self.starts[row], ""))
        out = self.source
        for start, end, text in sorted(self.edits, reverse=True):
            out = out[:start] + text + out[end:]
        out = tidy_imports(out)
        check_leaks(out)
        return out

    def join_blank_runs(self) -> None:
        """Where left-out lines had blank lines on both sides, keep only those above them."""
        blank = [not line.strip() for line in self.lines] + [False]
        for row in sorted(self.dropped):
            if row - 1 in self.dropped or row < 2 or not blank[row - 2]:
                continue  # not the first of a run of left-out lines, or no blank line above
            end = row
            while end + 1 in self.dropped:
                end += 1
            while blank[end]:  # ``blank[end]`` is the line after line ``end``
                end += 1
                self.dropped.add(end)

    def plan_lines(self) -> None:
        """Pass 1: read the pragmas (a pragma on its own line applies to the next line)."""
        pending: list[tuple[int, str, str]] = []
        block: int | None = None
        kind = ""
        for tok in self.tokens:
            row = tok.start[0]
            if pending and tok.type not in LAYOUT:
                for prow, verb, arg in pending:
                    self.pragma(row, verb, arg, where=prow)
                pending = []
            match = PRAGMA.match(tok.string) if tok.type == tokenize.COMMENT else None
            if match is None:
                continue
            verb, arg = match["verb"], match["arg"]
            own_line = not self.lines[row - 1][: tok.start[1]].strip()
            if verb in BLOCKS and own_line and (block is None or BLOCKS[verb] != kind):
                if block is not None:  # ``async-only`` runs into ``sync-only`` or back
                    self.block(kind, block, row)
                block, kind = row, BLOCKS[verb]
            elif verb == "end" and own_line and block is not None:
                self.block(kind, block, row)
                self.dropped.add(row)
                block = None
            elif verb == "add" and own_line and arg:
                self.becomes[row] = arg
            elif verb in ("drop", "becomes") and own_line:
                self.dropped.add(row)
                pending.append((row, verb, arg))
            elif verb in ("drop", "becomes"):
                self.pragma(row, verb, arg, where=row)
            else:
                raise UnasyncError(f"line {row}: misplaced or unknown pragma {tok.string!r}")
        if block is not None or pending:
            where = block or pending[0][0]
            raise UnasyncError(f"line {where}: a pragma without its end or its line")

    def block(self, kind: str, first: int, end: int) -> None:
        """Lines ``first`` (the pragma) to ``end`` (excluded): left out, or uncommented."""
        self.dropped.add(first)
        for row in range(first + 1, end):
            line = self.lines[row - 1]
            code = line.lstrip()
            if kind == "async":
                self.dropped.add(row)
            elif code.startswith(("# ", "#\n")) and not PRAGMA.match(code):
                self.becomes[row] = code[2:].rstrip()
            elif code.strip():
                raise UnasyncError(f"line {row}: a sync-only line must be a comment ('# code')")

    def pragma(self, row: int, verb: str, arg: str, *, where: int) -> None:
        """Record ``drop``/``becomes`` for line ``row`` (the pragma is on line ``where``)."""
        if verb == "becomes" and arg:
            self.becomes[row] = arg
        elif verb == "drop" and arg:
            self.drop_names.setdefault(row, []).extend(re.split(r"[\s,]+", arg))
        elif verb == "drop":
            self.dropped.add(row)
        else:
            raise UnasyncError(f"line {where}: '# unasync: becomes' needs the code")

    def edit_tokens(self) -> None:
        """Pass 2: ``async``/``await``, renames, wording, pragma comments, dropped names."""
        tokens, at, skip_until = self.tokens, self.at, (0, 0)
        for i, tok in enumerate(tokens):
            row, nxt = tok.start[0], tokens[min(i + 1, len(tokens) - 1)]
            if row in self.dropped or row in self.becomes or tok.start < skip_until:
                continue
            after = tokens[i + 2] if i + 2 < len(tokens) and nxt.string == "." else None
            dotted = f"{tok.string}.{after.string}" if after else ""
            if tok.type == tokenize.NAME and tok.string in self.drop_names.get(row, ()):
                self.drop_names[row].remove(tok.string)
                start, skip_until = name_span(tokens, i)
                self.edits.append((at(*start), at(*skip_until), ""))
            elif tok.string == "await" or (
                tok.string == "async" and nxt.string in ("def", "with", "for")
            ):
                self.edits.append((at(*tok.start), at(*nxt.start), ""))
            elif (dotted if after else tok.string) in UNWRAP and tok.type == tokenize.NAME:
                opening = i + 3 if after else i + 1
                closing = matching(tokens, opening)
                self.edits.append((at(*tok.start), at(*tokens[opening].end), ""))
                self.edits.append((at(*tokens[closing].start), at(*tokens[closing].end), ""))
                skip_until = tokens[opening].end
            elif tok.type == tokenize.NAME and after and dotted in CONSTRUCTS:
                self.edits.append((at(*tok.start), at(*after.end), CONSTRUCTS[dotted]))
                skip_until = after.end
            elif tok.type == tokenize.NAME and tok.string in NAMES:
                self.edits.append((at(*tok.start), at(*tok.end), NAMES[tok.string]))
            elif tok.type == tokenize.COMMENT and PRAGMA.match(tok.string):
                code = self.lines[row - 1][: tok.start[1]].rstrip()
                self.edits.append((self.starts[row - 1] + len(code), at(*tok.end), ""))
            elif tok.type in TEXT:
                new = self.reword(tok.string)
                if new != tok.string:
                    self.edits.append((at(*tok.start), at(*tok.end), new))
        left = [f"line {row}: {names}" for row, names in self.drop_names.items() if names]
        if left:
            raise UnasyncError(f"'# unasync: drop NAME': no such name on {'; '.join(left)}")
        if self.unused:
            raise UnasyncError(f"stale phrase rules (they match nothing): {sorted(self.unused)}")

    def reword(self, text: str) -> str:
        """A docstring's, string's or comment's blocking wording."""

        def replace(match: re.Match[str]) -> str:
            found = match.group()
            self.unused.discard(found)
            return self.phrases[found] if found in self.phrases else NAMES[found]

        return self.prose.sub(replace, text)


def matching(tokens: list[tokenize.TokenInfo], opening: int) -> int:
    """The index of the bracket closing the ``(`` or ``[`` at ``tokens[opening]``."""
    if tokens[opening].string not in ("(", "["):
        raise UnasyncError(f"line {tokens[opening].start[0]}: expected a call to unwrap")
    depth = 0
    for j in range(opening, len(tokens)):
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(tokens[j].string, 0)
        if depth == 0:
            return j
    raise UnasyncError(f"line {tokens[opening].start[0]}: unbalanced brackets")


def name_span(tokens: list[tokenize.TokenInfo], i: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Where ``NAME[...]`` at ``tokens[i]`` and one separator (before it, else after) lie."""
    j = matching(tokens, i + 1) if tokens[i + 1].string == "[" else i
    if tokens[i - 1].string in ("|", ","):
        return tokens[i - 2].end, tokens[j].end
    if tokens[j + 1].string in ("|", ","):
        return tokens[i].start, tokens[j + 2].start
    return tokens[i].start, tokens[j].end


def tidy_imports(text: str) -> str:
    """Drop the blank lines ruff puts above a comment (a pragma) between two imports of one
    section (``__future__``, the standard library, third-party, this repository's ``src``)."""
    out: list[str] = []
    above: tuple[str, int] | None = None  # indentation and section of the import just above
    inside = False  # in the parentheses of a multi-line import
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        here = import_section(line)
        if inside:
            inside = not line.lstrip().startswith(")")
        elif here is not None:
            above, inside = here, line.rstrip().endswith("(")
        elif not line.strip():
            if above is not None and above == import_section(
                lines[i + 1] if i + 1 < len(lines) else ""
            ):
                continue
        else:
            above = None
        out.append(line)
    return "".join(out)


def import_section(line: str) -> tuple[str, int] | None:
    """The indentation and isort section of an import statement's first line, else ``None``."""
    match = re.match(r"(\s*)(?:from|import)\s+(\w+)", line)
    if match is None:
        return None
    indent, top = match.groups()
    if top == "__future__":
        return indent, 0
    if top in sys.stdlib_module_names:
        return indent, 1
    return indent, 3 if (ROOT / "src" / top).exists() else 2


def check_leaks(text: str) -> None:
    """Refuse output that still says ``await``, ``async`` or asyncio, or uses an Async name."""
    problems = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.NAME and (
            tok.string.startswith("Async") or LEAKS.fullmatch(tok.string)
        ):
            problems.append(f"line {tok.start[0]}: name {tok.string!r}")
        elif tok.type in (tokenize.STRING, tokenize.COMMENT) and (
            found := LEAKS.search(tok.string)
        ):
            problems.append(f"line {tok.start[0]}: {found.group()!r} in {tok.string[:60]!r}")
    if problems:
        raise UnasyncError("the blocking output still speaks asyncio:\n  " + "\n  ".join(problems))


def generate(target: Target) -> str:
    """The generated file's full text (header included)."""
    source = (ROOT / target.source).read_text(encoding="utf-8")
    return HEADER.format(source=target.source) + convert(source, target.phrases)


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) every generated file; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail with a diff when stale")
    args = parser.parse_args(argv)
    stale = []
    for target in TARGETS:
        try:
            expected = generate(target)
        except (UnasyncError, tokenize.TokenError, SyntaxError) as exc:
            print(f"{target.source}: {exc}", file=sys.stderr)
            return 2
        path = ROOT / target.generated
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current == expected:
            continue
        if args.check:
            stale.append(target.generated)
            sys.stdout.writelines(
                difflib.unified_diff(
                    current.splitlines(keepends=True),
                    expected.splitlines(keepends=True),
                    f"{target.generated} (on disk)",
                    f"{target.generated} (generated from {target.source})",
                )
            )
        else:
            path.write_text(expected, encoding="utf-8", newline="\n")
            print(f"wrote {target.generated}")
    if stale:
        print(f"stale: {', '.join(stale)}; run python scripts/unasync.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
