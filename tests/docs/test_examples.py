"""Every ``python`` code block of the documentation runs, against in-process servers.

The blocks of one page run in order in one interpreter (a later block may use what an earlier
one defined, as a reader would), in a child process whose name resolution reaches only the
servers of ``_servers.py``. Names the examples read from the environment (``SMTP_PASSWORD``,
the OAuth app's id and secret) are set; nothing else is injected, so an undefined name fails.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import trustme
from tests.docs._servers import PASSWORD, DocsServers, docs_servers

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
BOOTSTRAP = pathlib.Path(__file__).with_name("_bootstrap.py")
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.M | re.S)


def code_blocks(page: pathlib.Path) -> list[str]:
    """The ``python`` fenced blocks of a page, in order."""
    return FENCE.findall(page.read_text(encoding="utf-8"))


def covered_elsewhere(page: pathlib.Path) -> str | None:
    """The test module that runs this page's examples itself (with its own servers), if any.

    A page whose examples need a set-up of their own (a pool namespace, a pytest project) is
    exercised by a test beside its subject that names the page; this harness leaves it alone.
    """
    here = pathlib.Path(__file__).parent
    reads_page = re.compile(r"""["']docs["']\s*/\s*["']""" + re.escape(page.name) + "[\"']")
    for test in sorted((ROOT / "tests").rglob("test_*.py")):
        if test.parent != here and reads_page.search(test.read_text(encoding="utf-8")):
            return str(test.relative_to(ROOT))
    return None


#: Pages whose examples this harness cannot run yet, and why. Keep it short: each entry is a
#: page a reader may copy from without it having run.
NOT_YET_RUNNABLE: dict[str, str] = {}

PAGES = sorted(p for p in DOCS.rglob("*.md") if code_blocks(p))


@pytest.fixture(scope="module")
def servers(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsServers]:
    with docs_servers(tls_ca, tmp_path_factory.mktemp("docs")) as running:
        yield running


def run_page(page: pathlib.Path, servers: DocsServers, cwd: pathlib.Path) -> str:
    blocks = code_blocks(page)
    source = "\n\n".join(f"# --- block {n}\n{block}" for n, block in enumerate(blocks, 1))
    script = cwd / f"example_{page.stem.replace('-', '_')}.py"
    script.write_text(source, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILSDK_", "SSL_CERT"))}
    env.update(
        MAILSDK_DOCS_HOSTS=json.dumps(servers.hosts),
        SSL_CERT_FILE=str(servers.ca_file),
        REQUESTS_CA_BUNDLE=str(servers.ca_file),
        SMTP_PASSWORD=PASSWORD,
        O365_CLIENT_ID="11111111-0000-0000-0000-000000000001",
        GMAIL_ACCESS_TOKEN="docs-access-token",
        O365_CLIENT_SECRET="docs-client-secret",
        PYTHONDONTWRITEBYTECODE="1",
        HOME=str(cwd),
    )
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, str(BOOTSTRAP), str(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"{page.relative_to(ROOT)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_examples_run(page: pathlib.Path, servers: DocsServers) -> None:
    if page.name in NOT_YET_RUNNABLE:
        pytest.skip(f"{page.name}: not run yet: {NOT_YET_RUNNABLE[page.name]}")
    elsewhere = covered_elsewhere(page)
    if elsewhere is not None:
        pytest.skip(f"{page.name}'s examples run in {elsewhere}")
    cwd = servers.ca_file.parent
    before = len(servers.submission.recorder.messages)
    run_page(page, servers, cwd)
    if "send_message(" in "".join(code_blocks(page)) and page.stem in SENDING_PAGES:
        assert len(servers.submission.recorder.messages) > before, "the example sent nothing"


#: Pages whose examples send through the submission server (checked to have delivered).
SENDING_PAGES = {
    "quickstart",
    "oauth",
    "tls",
    "errors",
    "extending",
    "index",
    "sending-many",
    "dkim",
    "proxies",
    "pools-and-batches",
}


def test_pools_and_batches_defines_its_own_client_and_messages(servers: DocsServers) -> None:
    """The page once relied on a test that injected ``client`` and ``messages``: a reader saw
    undefined names. It runs here now, with nothing injected, and delivers."""
    page = DOCS / "pools-and-batches.md"
    assert covered_elsewhere(page) is None
    assert "<!-- no-test -->" not in page.read_text(encoding="utf-8")
    before = len(servers.submission.recorder.messages)
    run_page(page, servers, servers.ca_file.parent)
    assert len(servers.submission.recorder.messages) >= before + 5


def test_docs_are_self_contained() -> None:
    """No page or docstring points at files outside the repository (no design notes)."""
    offenders = [
        str(p.relative_to(ROOT))
        for p in [*DOCS.rglob("*.md"), *(ROOT / "src").rglob("*.py")]
        if "DESIGN.md" in p.read_text(encoding="utf-8")
    ]
    assert not offenders, offenders
