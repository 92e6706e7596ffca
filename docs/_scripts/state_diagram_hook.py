"""MkDocs hook: the state-machine page shows an SVG generated at build time, not Mermaid.

Material for MkDocs renders Mermaid blocks with a script it loads from a CDN, so without network
access the page showed only the diagram's source. This hook replaces the page's Mermaid block
with the SVG that ``state_diagram.py`` draws with Graphviz from the state tables. Without
Graphviz (``apt-get install graphviz``; ``scripts/install-chromium.sh`` installs it with the
browser) the Mermaid block stays and a message says so.
"""

from __future__ import annotations

import logging
import pathlib
import re
import sys
import typing

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import state_diagram  # a sibling script, not a package

log = logging.getLogger("mkdocs.hooks.state_diagram")
_MERMAID = re.compile(r"^```mermaid\n.*?^```\n", re.M | re.S)


def on_page_markdown(markdown: str, page: typing.Any, **_: typing.Any) -> str:
    """Swap the generated page's Mermaid block for the Graphviz SVG."""
    if page.file.src_uri != "state-machine.md":
        return markdown
    svg = state_diagram.render_svg()
    if svg is None:
        log.info("graphviz (dot) is not installed: the state diagram stays Mermaid (CDN)")
        return markdown
    figure = f'<div class="state-diagram" markdown="0">\n{svg}\n</div>\n'
    return _MERMAID.sub(lambda _m: figure, markdown, count=1)
