"""``# noqa`` comments: ``# noqa`` silences a line, ``# noqa: TS102, TS2`` only those codes.

A comment line ``# torchstyle: noqa`` silences a whole file, ``# torchstyle: noqa: TS601``
one code in it. Codes of other tools in a ``# noqa: E501`` list silence nothing of ours.
The scan is a substring test, then a regex over the few lines that mention ``noqa``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_LINE = re.compile(
    r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]*(?:(?:\s*,\s*|\s+)[A-Z]+[0-9]*)*))?",
    re.IGNORECASE,
)
_FILE = re.compile(
    r"^\s*#\s*torchstyle:\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]*(?:\s*,\s*[A-Z]+[0-9]*)*))?\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_SPLIT = re.compile(r"[\s,]+")
_NEWLINE = re.compile(r"\r\n?|\n")

#: Marks "every code" in a set of suppressed codes.
ALL = "*"


@dataclass
class Suppressions:
    """Which codes are silenced where: per line (1-based) and for the whole file."""

    lines: dict[int, frozenset[str]] = field(default_factory=dict)
    file: frozenset[str] = frozenset()

    def silences(self, line: int, code: str) -> bool:
        """Whether a finding of ``code`` on ``line`` is silenced."""
        if self.file and _matches(self.file, code):
            return True
        codes = self.lines.get(line)
        return codes is not None and _matches(codes, code)


def _matches(codes: frozenset[str], code: str) -> bool:
    if ALL in codes:
        return True
    return any(code.startswith(c) for c in codes)


def _codes(text: str | None) -> frozenset[str]:
    if not text:
        return frozenset({ALL})
    return frozenset(c.upper() for c in _SPLIT.split(text.strip()) if c)


def scan(source: str) -> Suppressions | None:
    """The suppressions in ``source``; None when it has no ``noqa`` at all (the usual case)."""
    if "noqa" not in source and "NOQA" not in source:
        return None
    result = Suppressions()
    file_codes: set[str] = set()
    for match in _FILE.finditer(source):
        file_codes |= _codes(match.group("codes"))
    result.file = frozenset(file_codes)
    lines = _NEWLINE.split(source) if "\r" in source else source.split("\n")
    for number, line in enumerate(lines, start=1):
        if "noqa" not in line.lower():
            continue
        found = _LINE.search(line)
        if found is not None and not _FILE.match(line):
            result.lines[number] = _codes(found.group("codes"))
    return result
