"""Applying the edits of fixable findings to a source text."""

from __future__ import annotations

import re
from collections.abc import Iterable

from torchstyle.lint.base import Edit, Finding, Fix

#: An edit that adds a call without arguments: ``.detach()``, ``.item()``.
_CALL_SUFFIX = re.compile(r"\.\w+\(\)")


def without_duplicate_calls(fix: Fix, source: str) -> Fix | None:
    """``fix`` changed so that it never writes a call next to the same call already there.

    An edit that writes ``.detach()`` where ``.detach()`` follows (``x.data.detach()``)
    writes nothing instead (``x.detach()``); an insertion that would double a call next
    to it is dropped. None when no edit is left.
    """
    edits: list[Edit] = []
    changed = False
    for edit in fix.edits:
        text = edit.text
        if _CALL_SUFFIX.fullmatch(text) and (
            source.startswith(text, edit.end) or source.endswith(text, 0, edit.start)
        ):
            changed = True
            if edit.start == edit.end:
                continue  # the insertion adds nothing
            edit = Edit(edit.start, edit.end, "")
        edits.append(edit)
    if not changed:
        return fix
    return Fix(tuple(edits), fix.applicability) if edits else None


def fix_allowed(finding: Finding, *, unsafe: bool) -> bool:
    """Whether ``finding`` has a fix that the run may apply."""
    fix = finding.fix
    return fix is not None and (unsafe or fix.applicability == "safe")


def apply_fixes(
    source: str, findings: Iterable[Finding], *, unsafe: bool = False
) -> tuple[str, int]:
    """Applies the fixes of ``findings`` that do not overlap; returns (new source, count).

    Overlapping fixes are left for the next round (the caller lints again and repeats).
    """
    chosen: list[Edit] = []
    taken: list[tuple[int, int]] = []
    count = 0
    candidates = [f for f in findings if fix_allowed(f, unsafe=unsafe)]
    candidates.sort(key=lambda f: min(e.start for e in f.fix.edits) if f.fix else 0)
    for finding in candidates:
        assert finding.fix is not None
        edits = finding.fix.edits
        if not edits or any(e.start < 0 or e.end > len(source) or e.start > e.end for e in edits):
            continue
        if any(_overlaps(e.start, e.end, s, t) for e in edits for s, t in taken):
            continue
        chosen.extend(edits)
        taken.extend((e.start, e.end) for e in edits)
        count += 1
    if not chosen:
        return source, 0
    out = source
    for edit in sorted(chosen, key=lambda e: (e.start, e.end), reverse=True):
        out = out[: edit.start] + edit.text + out[edit.end :]
    return out, count


def _overlaps(a0: int, a1: int, b0: int, b1: int) -> bool:
    # Two insertions at the same point conflict too (their order would be arbitrary).
    if a0 == a1 == b0 == b1:
        return True
    return (a0 < b1 and b0 < a1) or a0 == b0
