"""Prints the per-rule precision table from the judged held-out findings.

Usage:
    python bench/lint_precision/table.py [FOLDER/judgements.csv]

Reads ``judgements.csv`` (rule, project, file, line, message, verdict, reason; verdict one
of ``real``, ``false``, ``style-only``) and ``counts.csv`` (findings per rule on the whole
held-out half) from this folder. Precision counts a style-only finding as right (the code
does what the rule says, but nothing breaks) and is shown with the style-only share apart;
"strict" counts only real findings. Acceptance: at least 90% for every default rule with
5 or more findings, none below 80%; rules now off by default are shown but not held to it.
"""

from __future__ import annotations

import csv
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from torchstyle.lint import registry  # noqa: E402  (the checkout's own linter)

VERDICTS = ("real", "false", "style-only")


def load(path: str) -> dict[str, dict[str, int]]:
    """Verdict counts per rule."""
    table: dict[str, dict[str, int]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            verdict = row["verdict"].strip()
            if verdict not in VERDICTS:
                raise SystemExit(f"{path}: unjudged or unknown verdict {verdict!r} in {row}")
            counts = table.setdefault(row["rule"], dict.fromkeys(VERDICTS, 0))
            counts[verdict] += 1
    return table


def main(argv: list[str] | None = None) -> int:
    """Prints the table; exit 1 when a rule misses the acceptance line."""
    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args else os.path.join(HERE, "heldout1", "judgements.csv")
    table = load(path)
    totals: dict[str, int] = {}
    counts_path = os.path.join(os.path.dirname(path), "counts.csv")
    if os.path.exists(counts_path):
        with open(counts_path, newline="") as f:
            totals = {row["rule"]: int(row["findings"]) for row in csv.DictReader(f)}
    lines = [
        "| rule | findings | judged | real | style-only | false | precision | strict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    failed = []
    defaults = registry.resolve_selection(None)
    sums = dict.fromkeys(VERDICTS, 0)
    for rule in sorted(set(table) | set(totals)):
        counts = table.get(rule, dict.fromkeys(VERDICTS, 0))
        judged = sum(counts.values())
        if rule in defaults:
            for v in VERDICTS:
                sums[v] += counts[v]
        right = counts["real"] + counts["style-only"]
        precision = right / judged if judged else 1.0
        strict = counts["real"] / judged if judged else 1.0
        total = totals.get(rule, judged)
        if rule in defaults and (precision < 0.8 or (total >= 5 and precision < 0.9)):
            failed.append(rule)
        shown = rule if rule in defaults else f"{rule} (now off by default)"
        lines.append(
            f"| {shown} | {total} | {judged} | {counts['real']} | {counts['style-only']} | "
            f"{counts['false']} | {precision:.0%} | {strict:.0%} |"
        )
    judged = sum(sums.values())
    right = sums["real"] + sums["style-only"]
    findings = sum(n for rule, n in totals.items() if rule in defaults)
    lines.append(
        f"| default rules | {findings or judged} | {judged} | {sums['real']} | "
        f"{sums['style-only']} | {sums['false']} | {right / max(judged, 1):.0%} | "
        f"{sums['real'] / max(judged, 1):.0%} |"
    )
    verdict = "every rule meets" if not failed else f"below the line: {', '.join(failed)}"
    sys.stdout.write(
        "\n".join(lines) + f"\n\nacceptance (>= 90% with 5+ findings, none < 80%): {verdict}\n"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
