"""The held-out precision judgements are well-formed data, and the table is computed from them."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from torchstyle.lint import registry

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "bench" / "lint_precision"
HALVES = sorted(p.parent for p in DATA.glob("*/judgements.csv"))


@pytest.mark.parametrize("half", HALVES, ids=[h.name for h in HALVES])
def test_judgements_are_complete(half: Path) -> None:
    with open(half / "judgements.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(half / "counts.csv", newline="") as f:
        counts = {r["rule"]: int(r["findings"]) for r in csv.DictReader(f)}
    rules = registry.all_rules()
    judged: dict[str, int] = {}
    for row in rows:
        assert row["rule"] in rules, row
        assert row["verdict"] in ("real", "false", "style-only"), row
        assert row["reason"].strip(), f"no reason for {row}"
        judged[row["rule"]] = judged.get(row["rule"], 0) + 1
    for rule, n in judged.items():
        assert n == min(counts[rule], 20), f"{rule}: {n} judged of {counts[rule]} findings"


def test_table_prints_the_latest_half_meeting_the_line() -> None:
    latest = DATA / "heldout2" / "judgements.csv"
    done = subprocess.run(
        [sys.executable, str(DATA / "table.py"), str(latest)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| TS201 | 8 | 8 | 0 | 8 | 0 | 100% | 0% |" in done.stdout
    assert "every rule meets" in done.stdout


def test_table_fails_a_rule_below_the_line(tmp_path: Path) -> None:
    rows = [
        ["TS201", "p", "f.py", str(i), "m", "false" if i < 2 else "real", "r"] for i in range(6)
    ]
    with open(tmp_path / "judgements.csv", "w", newline="") as f:
        csv.writer(f).writerows(
            [["rule", "project", "file", "line", "message", "verdict", "reason"]]
        )
        csv.writer(f).writerows(rows)
    done = subprocess.run(
        [sys.executable, str(DATA / "table.py"), str(tmp_path / "judgements.csv")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "| TS201 | 6 | 6 | 4 | 0 | 2 | 67% | 67% |" in done.stdout
    assert "below the line: TS201" in done.stdout
