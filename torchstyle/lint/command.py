"""CLI glue for ``torchstyle lint``: flags, configuration, files, output and exit code.

Exit codes: 0 nothing found, 1 findings (or diffs with ``--diff``), 2 usage error.
All output goes through :func:`_write`; nothing else in the lint package prints.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import os
import sys
from collections.abc import Iterator

from torchstyle.errors import UserError
from torchstyle.lint import files, registry
from torchstyle.lint.base import Finding
from torchstyle.lint.config import LintConfig, find_pyproject, load_config
from torchstyle.lint.output import FORMATS, render_findings, render_statistics, render_summary
from torchstyle.lint.runner import UNCHECKED, Linter, decode_source


def add_lint_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``lint`` flags."""
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", help="files or folders to check (default: .)"
    )
    rules = parser.add_argument_group("rule selection (codes or prefixes, comma-separated)")
    rules.add_argument(
        "--select",
        action="append",
        metavar="CODES",
        help="check only these rules (ALL for every rule)",
    )
    rules.add_argument(
        "--extend-select",
        action="append",
        default=[],
        metavar="CODES",
        help="also check these rules",
    )
    rules.add_argument(
        "--ignore", action="append", default=[], metavar="CODES", help="do not check these rules"
    )
    found = parser.add_argument_group("files and configuration")
    found.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="skip paths matching this gitignore-style pattern",
    )
    found.add_argument(
        "--force-exclude",
        action="store_true",
        help="apply excludes to paths named on the command line too (for pre-commit)",
    )
    found.add_argument(
        "--config", metavar="PYPROJECT", help="read [tool.torchstyle.lint] from this file"
    )
    found.add_argument("--isolated", action="store_true", help="ignore every pyproject.toml")
    out = parser.add_argument_group("output and fixes")
    out.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text (path:line:col: CODE message), json, or github annotations",
    )
    out.add_argument(
        "--statistics",
        action="store_true",
        help="print the number of findings per rule instead of the findings",
    )
    out.add_argument("--explain", metavar="CODE", help="print a rule's documentation and exit")
    out.add_argument("--fix", action="store_true", help="apply safe fixes to the files")
    out.add_argument(
        "--unsafe-fixes", action="store_true", help="apply unsafe fixes too (implies --fix)"
    )
    out.add_argument(
        "--diff", action="store_true", help="print the fixes as a diff instead of writing them"
    )
    out.add_argument(
        "--exit-zero", action="store_true", help="exit 0 even when something was found"
    )


def _write(text: str) -> None:
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()


def explain(code: str) -> str:
    """A rule's documentation as printed by ``--explain``."""
    rule = registry.rule_for(code)
    category = registry.CATEGORIES[rule.code[2]]
    status = (
        "on by default" if rule.default_enabled else "off by default (enable with --extend-select)"
    )
    fix = {"safe": "safe fix (--fix)", "unsafe": "unsafe fix (--unsafe-fixes)"}.get(
        rule.fixable or "", "none"
    )
    doc = inspect.cleandoc(rule.__doc__ or "")
    return f"{rule.code} ({rule.name})\n\nCategory: {category}\nStatus: {status}\nFix: {fix}\n\n{doc}\n"


def _codes(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [code for value in values for code in registry.split_codes(value)]


def _load_config(args: argparse.Namespace) -> LintConfig:
    if args.isolated:
        return LintConfig()
    if args.config:
        if not os.path.isfile(args.config):
            raise UserError(f"--config {args.config}: no such file")
        return load_config(args.config)
    return load_config(find_pyproject(os.getcwd()))


def _display(path: str) -> str:
    return os.path.normpath(path)


def _iter_files(args: argparse.Namespace, config: LintConfig) -> Iterator[str]:
    patterns = files.compile_patterns(files.DEFAULT_EXCLUDES, os.sep)
    patterns += files.compile_patterns(config.exclude, config.root)
    patterns += files.compile_patterns(args.exclude, os.getcwd())
    seen: set[str] = set()
    for path in args.paths or ["."]:
        if not os.path.exists(path):
            raise UserError(f"{path}: no such file or folder")
        if args.force_exclude and files.is_excluded_anywhere(path, patterns):
            continue
        found = (
            files.iter_python_files(path, patterns, respect_gitignore=config.respect_gitignore)
            if os.path.isdir(path)
            else iter([path])
        )
        for file in found:
            key = os.path.realpath(file)
            if key not in seen:
                seen.add(key)
                yield file


class _PerFileIgnores:
    def __init__(self, config: LintConfig) -> None:
        self.entries = [
            (pattern, frozenset(registry.expand(codes, option="per-file-ignores")))
            for glob, codes in config.per_file_ignores.items()
            for pattern in files.compile_patterns([glob], config.root)
        ]

    def codes_for(self, path: str) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        for pattern, codes in self.entries:
            if files.is_excluded_anywhere(path, [pattern]):
                out |= codes
        return out


def run_lint(args: argparse.Namespace) -> int:
    """Runs ``torchstyle lint``; returns the exit code."""
    if args.explain:
        _write(explain(args.explain))
        return 0
    config = _load_config(args)
    select = _codes(args.select)
    codes = registry.resolve_selection(
        select if select is not None else config.select,
        [*config.extend_select, *_codes(args.extend_select or [])],  # type: ignore[misc]
        [*config.ignore, *_codes(args.ignore or [])],  # type: ignore[misc]
    )
    linter = Linter(codes)
    per_file = _PerFileIgnores(config)
    unsafe = args.unsafe_fixes
    fixing = args.fix or unsafe or args.diff
    findings: list[Finding] = []
    diffs: list[str] = []
    fixed = 0
    for path in _iter_files(args, config):
        shown = _display(path)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            findings += linter.unchecked(shown, f"cannot read the file: {e.strerror}")
            continue
        try:
            source = decode_source(data)
        except (UnicodeDecodeError, SyntaxError, LookupError) as e:
            findings += linter.unchecked(shown, f"cannot decode the file: {e}")
            continue
        ignore = per_file.codes_for(path)
        if not fixing:
            findings += linter.lint(source.text, shown, ignore)
            continue
        new_text, remaining, n = linter.fix(source.text, shown, ignore, unsafe=unsafe)
        findings += remaining
        if new_text == source.text:
            continue
        fixed += n
        if args.diff:
            diffs.append(_diff(source.text, new_text, shown))
        else:
            try:
                with open(path, "wb") as f:
                    f.write(source.encode(new_text))
            except OSError as e:
                fixed -= n
                findings += linter.unchecked(shown, f"cannot write the fixes: {e.strerror}")
    if args.diff:
        _write("".join(diffs))
        return 0 if args.exit_zero or not diffs else 1
    if args.statistics:
        _write(render_statistics(findings, args.format))
    else:
        _write(render_findings(findings, args.format))
    if args.format == "text":
        _write(render_summary(findings, fixed, unsafe=unsafe, fixing=fixing))
    if args.exit_zero:
        return 0
    return 1 if findings else 0


def _diff(old: str, new: str, path: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


__all__ = ["UNCHECKED", "add_lint_arguments", "explain", "run_lint"]
