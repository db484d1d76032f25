"""SARIF 2.1.0 output (``--format sarif``), the format GitHub code scanning reads.

One run, with every selected rule described in the tool's driver and one result per finding.
Paths are relative, with forward slashes, against ``%SRCROOT%`` (the folder the command
ran in); columns count Unicode code points, as the text output does; fixes become SARIF
``fixes`` with character offsets.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from torchstyle.lint import registry
from torchstyle.lint.base import Finding

SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)


def _uri(path: str) -> str:
    if os.path.isabs(path):
        return "file://" + path.replace(os.sep, "/")
    return path.replace(os.sep, "/")


def _rule(code: str) -> dict[str, Any]:
    rule = registry.all_rules().get(code)
    if rule is None:
        return {"id": code}
    return {
        "id": code,
        "name": "".join(part.capitalize() for part in rule.name.split("-")),
        "shortDescription": {"text": rule.summary()},
        "fullDescription": {"text": inspect.cleandoc(rule.__doc__ or rule.message)},
        "help": {"text": f"torchstyle lint --explain {code}"},
        "defaultConfiguration": {"level": "warning", "enabled": rule.default_enabled},
        "properties": {"tags": [registry.CATEGORIES[code[2]]]},
    }


def _result(finding: Finding, index: int) -> dict[str, Any]:
    location = {"uri": _uri(finding.path)}
    if not os.path.isabs(finding.path):
        location["uriBaseId"] = "%SRCROOT%"
    result: dict[str, Any] = {
        "ruleId": finding.code,
        "ruleIndex": index,
        "level": "warning",
        "message": {"text": finding.message},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": location,
                    "region": {
                        "startLine": finding.line,
                        "startColumn": finding.col,
                        "endLine": finding.end_line,
                        "endColumn": finding.end_col,
                    },
                }
            }
        ],
    }
    if finding.cell is not None:
        # SARIF has no notion of notebook cells: lines count from the cell's first line
        result["properties"] = {"cell": finding.cell}
        result["message"]["text"] = f"cell {finding.cell}: {finding.message}"
    if finding.fix is not None:
        result["fixes"] = [
            {
                "description": {"text": f"{finding.fix.applicability} fix"},
                "artifactChanges": [
                    {
                        "artifactLocation": location,
                        "replacements": [
                            {
                                "deletedRegion": {
                                    "charOffset": edit.start,
                                    "charLength": edit.end - edit.start,
                                },
                                "insertedContent": {"text": edit.text},
                            }
                            for edit in finding.fix.edits
                        ],
                    }
                ],
            }
        ]
    return result


def _version() -> str | None:
    try:
        return metadata.version("torchstyle")
    except metadata.PackageNotFoundError:  # run from a checkout (the pre-commit hook)
        return None


def render_sarif(findings: Sequence[Finding]) -> str:
    """The findings as one SARIF 2.1.0 log."""
    codes = sorted({f.code for f in findings})
    index = {code: i for i, code in enumerate(codes)}
    log = {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "torchstyle",
                        **({"version": version} if (version := _version()) else {}),
                        "rules": [_rule(code) for code in codes],
                    }
                },
                "originalUriBaseIds": {
                    "%SRCROOT%": {"uri": _uri(os.getcwd().rstrip(os.sep) + os.sep)}
                },
                "columnKind": "unicodeCodePoints",
                "results": [_result(f, index[f.code]) for f in findings],
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"
