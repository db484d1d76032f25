"""Rendering findings: ``text`` (``path:line:col: CODE message``), ``json``, ``github``, ``sarif``.

The JSON format is versioned: every finding carries ``schema_version`` (see ``docs/lint.md``
for its fields); a change that removes or renames a field raises the version.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torchstyle.lint.base import Finding

FORMATS = ("text", "json", "github", "sarif")
#: The version of the ``--format json`` fields; raised when a field is removed or renamed.
JSON_SCHEMA_VERSION = 1


def _fix_json(finding: Finding) -> dict[str, object] | None:
    if finding.fix is None:
        return None
    return {
        "applicability": finding.fix.applicability,
        "edits": [{"start": e.start, "end": e.end, "content": e.text} for e in finding.fix.edits],
    }


def _github_escape(text: str, *, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def where(finding: Finding) -> str:
    """``path:line:col`` of a finding; ``path:cell N:line:col`` in a notebook."""
    cell = f"cell {finding.cell}:" if finding.cell is not None else ""
    return f"{finding.path}:{cell}{finding.line}:{finding.col}"


def render_findings(findings: Sequence[Finding], fmt: str) -> str:
    """The findings in format ``fmt``, one per line for text/github, a JSON array for json."""
    if fmt == "sarif":
        from torchstyle.lint.sarif import render_sarif  # imports importlib.metadata: on demand

        return render_sarif(findings)
    if fmt == "json":
        rows = [
            {
                "schema_version": JSON_SCHEMA_VERSION,
                "path": f.path,
                "cell": f.cell,
                "line": f.line,
                "column": f.col,
                "end_line": f.end_line,
                "end_column": f.end_col,
                "code": f.code,
                "name": _rule_name(f.code),
                "message": f.message,
                "fix": _fix_json(f),
            }
            for f in findings
        ]
        return json.dumps(rows, indent=2) + "\n"
    lines = []
    for f in findings:
        if fmt == "github":
            props = ",".join(
                [
                    f"file={_github_escape(f.path, prop=True)}",
                    f"line={f.line}",
                    f"col={f.col}",
                    f"endLine={f.end_line}",
                    f"endColumn={f.end_col}",
                    f"title={_github_escape(f'torchstyle ({f.code})', prop=True)}",
                ]
            )
            body = _github_escape(f"{where(f)}: {f.code} {f.message}")
            lines.append(f"::error {props}::{body}")
        else:
            lines.append(f"{where(f)}: {f.code} {f.message}")
    return "".join(line + "\n" for line in lines)


def render_summary(findings: Sequence[Finding], fixed: int, *, unsafe: bool, fixing: bool) -> str:
    """The closing line of the text format ("All checks passed!" when nothing was found)."""
    safe = sum(1 for f in findings if f.fix is not None and f.fix.applicability == "safe")
    hidden = sum(1 for f in findings if f.fix is not None) - safe
    return summary_line(len(findings), fixed, (safe, hidden), unsafe=unsafe, fixing=fixing)


def summary_line(
    found: int, fixed: int, fixable: tuple[int, int], *, unsafe: bool, fixing: bool
) -> str:
    """The closing line from counts: ``fixable`` is (safe fixes, unsafe-only fixes)."""

    def count(n: int) -> str:
        return f"{n} problem" if n == 1 else f"{n} problems"

    if found and fixed:
        text = f"Fixed {count(fixed)}, found {count(found)} more"
    elif found:
        text = f"Found {count(found)}"
    elif fixed:
        text = f"Fixed {count(fixed)}"
    else:
        return "All checks passed!\n"
    safe, hidden = fixable
    hints = []
    if safe and not fixing:
        hints.append(f"{safe} fixable with --fix")
    if hidden and not unsafe:
        hints.append(f"{hidden} more with --unsafe-fixes")
    if hints:
        text += f" ({'; '.join(hints)})"
    return text + ".\n"


def _rule_name(code: str) -> str:
    from torchstyle.lint import registry  # loads every rule: only the formats that name them

    rule = registry.all_rules().get(code)
    return rule.name if rule is not None else ""


def render_statistics(findings: Sequence[Finding], fmt: str) -> str:
    """Counts per code, most frequent first."""
    from collections import Counter

    counts = Counter(f.code for f in findings)
    fixable = Counter(f.code for f in findings if f.fix is not None)
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if fmt == "json":
        rows = [
            {"code": code, "name": _rule_name(code), "count": n, "fixable": fixable[code] > 0}
            for code, n in ordered
        ]
        return json.dumps(rows, indent=2) + "\n"
    width = max((len(str(n)) for _, n in ordered), default=1)
    return "".join(
        f"{n:>{width}}  {code}  {'[*]' if fixable[code] else '   '} {_rule_name(code)}\n"
        for code, n in ordered
    )
