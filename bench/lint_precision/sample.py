"""Samples findings of the default rules on the held-out corpus, for judging by hand.

Usage:
    python bench/lint_precision/sample.py CORPUS_DIR [--half held-out-2] [--out FILE]

CORPUS_DIR holds one folder per held-out project of ``bench/lint_corpus.toml``, named
``owner+name``. Each project is linted on its own (``torchstyle lint --isolated``, default
rules); up to ``--per-rule`` findings per rule are drawn at random (seed 0) over the whole
held-out half, and written as CSV rows with empty ``verdict`` and ``reason`` columns for the
judge to fill in (``real``, ``false`` or ``style-only``). The number of findings per rule
goes to ``counts.csv`` next to the output. Never commit the corpus itself.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIELDS = ["rule", "project", "file", "line", "message", "verdict", "reason"]


def held_out(half: str) -> list[str]:
    """The projects' folder names (``owner+name``) of one half of the corpus."""
    with open(os.path.join(ROOT, "bench", "lint_corpus.toml"), "rb") as f:
        corpus = tomllib.load(f)
    return [entry["repo"].replace("/", "+") for entry in corpus[half]]


def lint(folder: str) -> list[dict[str, object]]:
    """The findings of the default rules in ``folder`` (JSON objects)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    command = [sys.executable, "-m", "torchstyle", "lint", "--isolated", "--format", "json"]
    done = subprocess.run(
        [*command, "--exit-zero", "."], cwd=folder, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"lint failed in {folder}: {done.stderr.strip()}")
    found: list[dict[str, object]] = json.loads(done.stdout)
    return found


def main(argv: list[str] | None = None) -> int:
    """Writes the sample and the counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", help="folder with one sub-folder per held-out project")
    parser.add_argument("--per-rule", type=int, default=20)
    parser.add_argument("--half", default="held-out", help="held-out or held-out-2")
    parser.add_argument("--out", default=os.path.join(HERE, "sample.csv"))
    args = parser.parse_args(argv)
    by_rule: dict[str, list[dict[str, object]]] = {}
    for project in held_out(args.half):
        folder = os.path.join(args.corpus, project)
        if not os.path.isdir(folder):
            raise SystemExit(f"{folder} is missing; fetch it at the commit in lint_corpus.toml")
        for finding in lint(folder):
            finding["project"] = project
            by_rule.setdefault(str(finding["code"]), []).append(finding)
    rng = random.Random(0)
    rows = []
    for rule in sorted(by_rule):
        found = by_rule[rule]
        picked = found if len(found) <= args.per_rule else rng.sample(found, args.per_rule)
        picked.sort(key=lambda f: (str(f["project"]), str(f["path"]), int(str(f["line"]))))
        for f in picked:
            rows.append([rule, f["project"], f["path"], f["line"], f["message"], "", ""])
    with open(args.out, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(FIELDS)
        writer.writerows(rows)
    with open(os.path.join(os.path.dirname(args.out), "counts.csv"), "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["rule", "findings"])
        writer.writerows((rule, len(found)) for rule, found in sorted(by_rule.items()))
    sys.stdout.write(f"{len(rows)} findings sampled from {sum(map(len, by_rule.values()))}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
