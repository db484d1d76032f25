"""Recall of `torchstyle lint` on TorchFix's own test fixtures, for the kinds we claim.

Usage:
    python bench/torchfix_recall.py --torchfix-repo PATH

PATH is a checkout of https://github.com/pytorch-labs/torchfix (a work tree, or a bare git
directory: its ``tests/fixtures`` are read with ``git show``). Nothing of TorchFix is copied
here; the script reads its fixtures where they are.

What counts as a use site:
    * checker fixtures (``tests/fixtures/*/checker/X.py``): every line of ``X.txt`` (TorchFix's
      expected findings, ``LINE:COL CODE message``) whose code is one we claim. It is found
      when torchstyle reports the mapped rule on that line, naming the same API when TorchFix's
      message names one (each finding counts once: two names imported on one line are two
      sites);
    * codemod fixtures (``tests/fixtures/*/codemod/X.in.py``) of the kinds we claim: every line
      of ``X.in.py`` that TorchFix's expected ``X.out.py`` changes. It is found when torchstyle
      reports one of the mapped rules on that line.

The figure is found / expected use sites; every miss is listed with why.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import os
import re
import subprocess
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from torchstyle.lint import deprecations as dep
from torchstyle.lint.base import Finding
from torchstyle.lint.runner import Linter

#: TorchFix's codes of the kinds we claim -> the torchstyle rule that covers them.
CLAIMED = {
    "TOR001": "TS503",  # use of a removed function
    "TOR004": "TS503",  # import of a removed function
    "TOR101": "TS503",  # use of a deprecated function
    "TOR103": "TS503",  # import of a deprecated function
    "TOR003": "TS503",  # checkpoint without use_reentrant
    "TOR201": "TS503",  # torchvision pretrained=
    "TOR202": "TS503",  # torchvision v2.ToTensor
    "TOR102": "TS502",  # torch.load without weights_only
}
#: TorchFix's codes of kinds torchstyle does not claim, and why.
NOT_CLAIMED = {
    "TOR002": "a typo check (`require_grad`), not a deprecation",
    "TOR104": "non-public functions that are not deprecated",
    "TOR105": "imports of non-public functions that are not deprecated",
    "TOR106": "numerics (`log1p`), not a deprecation",
    "TOR107": "numerics (`expm1`), not a deprecation",
    "TOR108": "numerics (`logsumexp`), not a deprecation",
    "TOR203": "an import style preference",
    "TOR401": "a performance hint (`num_workers`)",
    "TOR402": "a performance hint (`set_to_none`)",
    "TOR901": "a rule for PyTorch's own test files",
}
#: Codemod fixtures (by name, before ``.in.py``) of the kinds we claim, with their kind.
CODEMOD_KINDS = {
    "deprecated_symbols": "TOR101",
    "reentrant_checkpoint": "TOR003",
    "pretrained": "TOR201",
}
RULES = sorted(set(CLAIMED.values()) | {"TS501"})
_EXPECTED = re.compile(r"^(\d+):(\d+) (TOR\d+) (.*)$")
_API = re.compile(r"function `?([\w.]+?)`?(?::|$| )|`(\w+)` is deprecated|`(v2\.\w+)\(\)`")


@dataclass
class Site:
    """One use site TorchFix expects to be found."""

    fixture: str
    line: int
    code: str
    name: str  # the API's last name when TorchFix's message gives it, else ""
    #: The lines of the simple statement around a codemod line (a multi-line import).
    lines: tuple[int, int] = (0, 0)

    def covers(self, line: int) -> bool:
        """Whether a finding on ``line`` is at this site."""
        return line == self.line or self.lines[0] <= line <= self.lines[1]


class Fixtures:
    """Reads TorchFix's fixture files from a work tree or a bare git directory."""

    def __init__(self, repo: str) -> None:
        self.repo = repo
        self.tree = os.path.isdir(os.path.join(repo, "tests", "fixtures"))

    def available(self) -> bool:
        """Whether ``repo`` holds TorchFix's fixtures."""
        return self.tree or bool(self.names())

    def names(self) -> list[str]:
        """Paths of every fixture file, relative to the repository."""
        if self.tree:
            out = []
            for folder, _, files in os.walk(os.path.join(self.repo, "tests", "fixtures")):
                out += [os.path.relpath(os.path.join(folder, f), self.repo) for f in files]
            return sorted(out)
        try:
            listing = subprocess.run(
                ["git", "--git-dir", self.repo, "ls-tree", "-r", "--name-only", "HEAD"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        except (OSError, subprocess.CalledProcessError):
            return []
        return sorted(n for n in listing.splitlines() if n.startswith("tests/fixtures/"))

    def read(self, name: str) -> str:
        """The text of fixture file ``name``."""
        if self.tree:
            with open(os.path.join(self.repo, name), encoding="utf-8") as f:
                return f.read()
        return subprocess.run(
            ["git", "--git-dir", self.repo, "show", f"HEAD:{name}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout


def _api_name(message: str) -> str:
    match = _API.search(message)
    if match is None:
        return ""
    name = next(g for g in match.groups() if g)
    return name.rsplit(".", 1)[-1]


def checker_sites(fixtures: Fixtures, names: list[str]) -> tuple[list[Site], dict[str, int]]:
    """Expected sites of the claimed kinds, and the count of each kind left out."""
    sites: list[Site] = []
    skipped: dict[str, int] = {}
    for name in names:
        if "/checker/" not in name or not name.endswith(".txt"):
            continue
        source = name[: -len(".txt")] + ".py"
        for line in fixtures.read(name).splitlines():
            match = _EXPECTED.match(line.strip())
            if match is None:
                continue
            row, _, code, message = match.groups()
            if code in CLAIMED:
                sites.append(Site(source, int(row), code, _api_name(message)))
            else:
                skipped[code] = skipped.get(code, 0) + 1
    return sites, skipped


def codemod_sites(fixtures: Fixtures, names: list[str]) -> list[Site]:
    """Lines of the claimed kinds' ``.in.py`` codemod fixtures that ``.out.py`` changes."""
    sites: list[Site] = []
    for name in names:
        if "/codemod/" not in name or not name.endswith(".in.py"):
            continue
        kind = next((k for key, k in CODEMOD_KINDS.items() if key in name), None)
        if kind is None:
            continue
        text = fixtures.read(name)
        spans = _statement_spans(text)
        before = text.splitlines()
        after = fixtures.read(name[: -len(".in.py")] + ".out.py").splitlines()
        matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
        for tag, i1, i2, _, _ in matcher.get_opcodes():
            if tag in ("replace", "delete"):
                sites += [
                    Site(name, i + 1, kind, "", spans.get(i + 1, (0, 0))) for i in range(i1, i2)
                ]
    return sites


def _statement_spans(source: str) -> dict[int, tuple[int, int]]:
    """Line -> (first, last) line of the simple statement (not a block) that holds it."""
    spans: dict[int, tuple[int, int]] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.stmt) and not hasattr(node, "body"):
            last = node.end_lineno or node.lineno
            for line in range(node.lineno, last + 1):
                spans[line] = (node.lineno, last)
    return spans


def _names(message: str, name: str) -> bool:
    """Whether torchstyle's ``message`` is about the API ``name`` (any, when "")."""
    if not name or "positional" in message:
        return True
    return any(f"{name}{end}" in message for end in ("`", "=`"))


def _why(site: Site, findings: list[Finding]) -> str:
    if site.name and not any(d.name.endswith(f".{site.name}") for d in dep.TABLE):
        return f"`{site.name}` is not in torchstyle's deprecation table"
    near = [f for f in findings if abs(f.line - site.line) <= 1 and _names(f.message, site.name)]
    if near:
        return f"reported at line {near[0].line} instead ({near[0].code})"
    return "in the table, but this form of use is not recognised"


def measure(
    fixtures: Fixtures,
) -> tuple[int, int, list[str], dict[str, int], dict[str, list[int]]]:
    """(found, expected, missed lines with reasons, kinds left out, [found, expected] by kind)."""
    names = fixtures.names()
    checker, skipped = checker_sites(fixtures, names)
    sites = checker + codemod_sites(fixtures, names)
    linter = Linter(RULES)
    by_file: dict[str, list[Finding]] = {}
    found, missed = 0, []
    by_kind: dict[str, list[int]] = {}
    for site in sites:
        kind = f"{site.code} {'checker' if '/checker/' in site.fixture else 'codemod'}"
        counts = by_kind.setdefault(kind, [0, 0])
        counts[1] += 1
        if site.fixture not in by_file:
            by_file[site.fixture] = linter.lint(fixtures.read(site.fixture), site.fixture)
        findings = by_file[site.fixture]
        rule = CLAIMED[site.code]
        match = next(
            (
                f
                for f in findings
                if site.covers(f.line) and f.code == rule and _names(f.message, site.name)
            ),
            None,
        )
        if match is not None:
            if site.name:  # each finding stands for one site
                findings.remove(match)
            found += 1
            counts[0] += 1
        else:
            missed.append(
                f"{site.fixture}:{site.line} {site.code} {site.name}: {_why(site, findings)}"
            )
    return found, len(sites), missed, skipped, by_kind


def main() -> int:
    """Prints the recall figure and the misses."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--torchfix-repo", default="torchfix", help="a TorchFix checkout")
    args = parser.parse_args()
    fixtures = Fixtures(args.torchfix_repo)
    if not fixtures.available():
        print(
            f"no TorchFix checkout at {args.torchfix_repo!r}: pass --torchfix-repo PATH "
            "(git clone https://github.com/pytorch-labs/torchfix PATH)"
        )
        return 2
    found, expected, missed, skipped, by_kind = measure(fixtures)
    share = 100.0 * found / expected if expected else 0.0
    print(f"TorchFix fixtures, kinds claimed: {found} of {expected} use sites found ({share:.1f}%)")
    for kind, (hit, total) in sorted(by_kind.items()):
        print(f"  {kind}: {hit} of {total}")
    for line in missed:
        print(f"  missed {line}")
    for code, count in sorted(skipped.items()):
        print(
            f"  not claimed: {code} ({count} sites): {NOT_CLAIMED.get(code, 'not a kind we check')}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
