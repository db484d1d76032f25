"""TS001: a file that could not be checked."""

from __future__ import annotations

from torchstyle.lint.base import Rule
from torchstyle.lint.registry import register


@register
class UncheckedFile(Rule):
    """A file torchstyle could not check: a syntax error, an undecodable or unreadable file.

    What:
        The file does not parse as Python (or cannot be read or decoded, or nests too deeply
        to analyse), so none of the other rules looked at it. The run goes on with the other
        files; the finding says why this one was skipped.

    Why:
        A file that silently escapes the linter looks clean when it is not.

    Example:
        def train(model:
            ...

    Use instead:
        Fix the syntax error (or the encoding), then lint again. If the file is not meant to
        be Python at all, exclude it in ``[tool.torchstyle.lint] exclude``.
    """

    code = "TS001"
    name = "unchecked-file"
    message = "file could not be checked"
