"""What a run asks of every file, and what checking one file gives.

Kept apart from :mod:`torchstyle.lint.jobs` so that a run served from the cache builds them
without importing the checker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torchstyle.lint.base import Finding


@dataclass(frozen=True)
class Options:
    """What the command line asks of every file (picklable, for the workers)."""

    select: tuple[str, ...] | None = None
    extend_select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    fix: bool = False
    unsafe: bool = False
    diff: bool = False

    @property
    def fixing(self) -> bool:
        """Whether fixes are computed (written, or shown as a diff)."""
        return self.fix or self.unsafe or self.diff


@dataclass
class FileResult:
    """What checking one file gave."""

    findings: list[Finding] = field(default_factory=list)
    diff: str = ""
    fixed: int = 0
    #: The fixed source, for standard input (written to stdout instead of a file).
    output: str | None = None
