"""TS002: torchstyle failed on a file."""

from __future__ import annotations

from torchstyle.lint.base import Rule
from torchstyle.lint.registry import register


@register
class InternalError(Rule):
    """torchstyle itself failed while checking this file.

    What:
        A rule raised an exception on this file. The other files are still checked; this one
        is reported instead of crashing the whole run.

    Why:
        It is a bug in torchstyle, never in your code, and hiding it would make the file look
        clean.

    Example:
        Any file; the message names the exception and where it happened.

    Use instead:
        Report the message (and, if you can, the code that triggers it). Until it is fixed,
        ``# torchstyle: noqa`` on a line of its own skips the file.
    """

    code = "TS002"
    name = "internal-error"
    message = "internal error"
