"""A griffe extension for the API reference: Sphinx roles in docstrings become code spans.

The docstrings use reStructuredText roles (``:class:`~mailsdk.Client```) that read well in
``help()`` and editors; mkdocstrings renders Markdown, where they would show raw. Loaded by
``mkdocs.yml`` (``extensions:`` of the python handler).
"""

from __future__ import annotations

import re
import typing

import griffe

#: ``:role:`target``` or ``:role:`~dotted.target``` (the tilde keeps only the last part).
ROLE = re.compile(r":(?:class|meth|func|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")


def _replace(match: re.Match[str]) -> str:
    target = match.group(2)
    if match.group(1):
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: typing.Any) -> None:
        if obj.docstring is not None and ":`" in obj.docstring.value:
            obj.docstring.value = ROLE.sub(_replace, obj.docstring.value)
