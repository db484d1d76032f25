"""CLI glue for ``torchstyle lint``: flags, configuration, files, output and exit code.

Exit codes: 0 nothing found, 1 findings (or diffs with ``--diff``), 2 usage error.
All output goes through :func:`_write`; nothing else in the lint package prints.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from torchstyle.errors import UserError
from torchstyle.lint import files, registry
from torchstyle.lint.base import Finding
from torchstyle.lint.config import ConfigFinder, LintConfig
from torchstyle.lint.options import FileResult
from torchstyle.lint.output import FORMATS, render_findings, render_statistics, render_summary

# The checking machinery (the rules, the checker, worker processes) is imported only when a
# file is not in the cache: a run served from the cache starts in a few milliseconds.
if TYPE_CHECKING:
    from torchstyle.lint.cache import Cache
    from torchstyle.lint.options import Options


def add_lint_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``lint`` flags."""
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="files or folders to check (default: .); `-` reads code from standard input",
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
    _add_file_arguments(parser)
    _add_output_arguments(parser)


_CACHE_FOLDER = ".torchstyle_cache"


def _add_file_arguments(parser: argparse.ArgumentParser) -> None:
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
    found.add_argument(
        "--stdin-filename",
        metavar="PATH",
        help="the file the code on standard input (`-`) comes from: names it in the output "
        "and picks its configuration",
    )
    found.add_argument(
        "--no-cache",
        action="store_true",
        help=f"neither read nor write the results cache (the {_CACHE_FOLDER} folder)",
    )
    found.add_argument(
        "--jobs",
        "-j",
        type=int,
        metavar="N",
        help="check files in N processes (default: every available core)",
    )


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    out = parser.add_argument_group("output and fixes")
    out.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text (path:line:col: CODE message), json, github annotations or sarif "
        "(GitHub code scanning)",
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


def _write(text: str, stream: TextIO | None = None) -> None:
    if not text:
        return
    out = stream or sys.stdout
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:
        # The reader went away (`torchstyle lint | head -1`): say nothing more, and point the
        # stream at /dev/null so that the flush at exit does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)


def explain(code: str) -> str:
    """A rule's documentation as printed by ``--explain``."""
    import inspect

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


def _codes(values: list[str] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    return tuple(code for value in values for code in registry.split_codes(value))


def _pyproject(args: argparse.Namespace, finder: ConfigFinder, path: str) -> str | None:
    """The pyproject.toml whose settings apply to ``path``."""
    if args.isolated:
        return None
    if args.config:
        return os.path.abspath(str(args.config))
    return finder.pyproject_for(path)


def _excludes(
    config: LintConfig, cache: dict[str | None, list[files.Pattern]]
) -> list[files.Pattern]:
    patterns = cache.get(config.path)
    if patterns is None:
        patterns = cache[config.path] = files.compile_patterns(config.exclude, config.root)
    return patterns


def _iter_files(args: argparse.Namespace, finder: ConfigFinder) -> Iterator[tuple[str, str | None]]:
    """``(path, pyproject)`` of each file to check, in a stable order, without duplicates."""
    base: list[files.Pattern] = []
    cache: dict[str | None, list[files.Pattern]] = {}
    seen: set[str] = set()
    for path in args.paths or ["."]:
        if not os.path.lexists(path):
            raise UserError(f"{path}: no such file or folder")
        top = _pyproject(args, finder, path)
        top_config = finder.config(top)
        walk = os.path.isdir(path)
        if (walk or args.force_exclude) and not base:
            # compiled only when needed: a file named alone (an editor, a hook) skips them
            base = files.compile_patterns(files.DEFAULT_EXCLUDES, os.sep)
            base += files.compile_patterns(args.exclude, os.getcwd())
        patterns = base + _excludes(top_config, cache) if base else []
        if args.force_exclude and files.is_excluded_anywhere(path, patterns):
            continue
        if not walk:
            if not files.lintable(path):
                raise UserError(
                    f"{path}: not a Python file or notebook; torchstyle lint reads "
                    f"{', '.join(files.NAMED_SUFFIXES)} files and scripts without a suffix"
                )
            found: Iterator[str] = iter([path])
        else:
            found = files.iter_python_files(
                path, patterns, respect_gitignore=top_config.respect_gitignore
            )
        for file in found:
            key = os.path.realpath(file)
            if key in seen:
                continue
            seen.add(key)
            pyproject = _pyproject(args, finder, file)
            if pyproject != top and (os.path.isdir(path) or args.force_exclude):
                # a sub-project's own excludes apply to the files found in it
                own = _excludes(finder.config(pyproject), cache)
                if own and files.is_excluded_anywhere(file, own):
                    continue
            yield file, pyproject


def _options(args: argparse.Namespace) -> Options:
    from torchstyle.lint.options import Options

    return Options(
        select=_codes(args.select),
        extend_select=_codes(args.extend_select or []) or (),
        ignore=_codes(args.ignore or []) or (),
        fix=args.fix,
        unsafe=args.unsafe_fixes,
        diff=args.diff,
    )


def _jobs(args: argparse.Namespace) -> int:
    from torchstyle.lint.jobs import available_cores

    if args.jobs is None:
        return available_cores()
    jobs = int(args.jobs)
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: give 1 or more (default: {available_cores()})")
    return jobs


def _lint_stdin(args: argparse.Namespace, options: Options, finder: ConfigFinder) -> int:
    from torchstyle.lint.jobs import FileChecker, unified_diff

    shown = args.stdin_filename or "-"
    path = os.path.abspath(args.stdin_filename) if args.stdin_filename else os.getcwd()
    pyproject = _pyproject(args, finder, path)
    data = sys.stdin.buffer.read()
    excluded = False
    if args.stdin_filename and args.force_exclude:
        config = finder.config(pyproject)
        patterns = files.compile_patterns([*files.DEFAULT_EXCLUDES], os.sep)
        patterns += files.compile_patterns([*config.exclude], config.root)
        patterns += files.compile_patterns(args.exclude, os.getcwd())
        excluded = files.is_excluded_anywhere(path, patterns)
    if excluded:
        result = FileResult(output=data.decode("utf-8", "replace") if options.fixing else None)
    else:
        checker = FileChecker(options, finder)
        result = checker.check_bytes(data, path, shown, pyproject, write=False)
    if result.output is not None and not options.diff:
        # like ruff: the fixed source goes to stdout, what is left to stderr
        _write(result.output)
        _write(render_findings(result.findings, "text"), sys.stderr)
        return 0 if args.exit_zero or not result.findings else 1
    if options.diff:
        old = data.decode("utf-8", "replace")
        diff = unified_diff(old, result.output or old, shown)
        _write(diff)
        return 0 if args.exit_zero or not diff else 1
    return _report(args, result.findings, result.fixed)


def run_lint(args: argparse.Namespace) -> int:
    """Runs ``torchstyle lint``; returns the exit code."""
    if args.explain:
        _write(explain(args.explain))
        return 0
    if args.stdin_filename and "-" not in args.paths:
        raise UserError("--stdin-filename names the code read from standard input; pass `-` too")
    if args.statistics and args.format in ("sarif", "github"):
        raise UserError(f"--statistics prints counts, not {args.format}; use --format text or json")
    if args.config and not os.path.isfile(args.config):
        raise UserError(f"--config {args.config}: no such file")
    options, finder = _options(args), ConfigFinder()
    if args.paths == ["-"]:
        return _lint_stdin(args, options, finder)
    if "-" in args.paths:
        raise UserError("`-` (standard input) cannot be mixed with file names; pass it alone")
    items = list(_iter_files(args, finder))
    findings: list[Finding] = []
    diffs: list[str] = []
    fixed = 0
    for result in _check(args, items, options, finder):
        findings += result.findings
        fixed += result.fixed
        if result.diff:
            diffs.append(result.diff)
    if args.diff:
        _write("".join(diffs))
        return 0 if args.exit_zero or not diffs else 1
    return _report(args, findings, fixed)


def _cache(args: argparse.Namespace, options: Options) -> Cache | None:
    if args.no_cache or options.fixing:
        return None
    from torchstyle.lint.cache import Cache

    selection = repr((options.select, options.extend_select, options.ignore))
    return Cache(os.getcwd(), selection)


def _cached(cache: Cache, path: str, pyproject: str | None) -> tuple[str, FileResult | None]:
    """The file's cache key and its cached result (None when not cached)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return "", None
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return "", None  # the checker reports it
    key = cache.key(data, path, pyproject)
    found = cache.get(key, os.path.normpath(path))
    return key, None if found is None else FileResult(found)


def _check(
    args: argparse.Namespace,
    items: list[tuple[str, str | None]],
    options: Options,
    finder: ConfigFinder,
) -> list[FileResult]:
    """Each file's result, in order: from the cache where it has one, else checked."""
    cache = _cache(args, options)
    results: list[FileResult | None] = [None] * len(items)
    keys = [""] * len(items)
    if cache is not None:
        for i, (path, pyproject) in enumerate(items):
            keys[i], results[i] = _cached(cache, path, pyproject)
    missing = [i for i, result in enumerate(results) if result is None]
    if missing or not items:
        from torchstyle.lint.jobs import FileChecker, check_files

        checker = FileChecker(options, finder)
        for pyproject in {p for _, p in items}:
            checker.setting(pyproject)  # a bad configuration fails here, before any worker starts
        checked = check_files([items[i] for i in missing], options, finder, _jobs(args))
        for i, result in zip(missing, checked, strict=True):
            results[i] = result
            if cache is not None and keys[i]:
                cache.put(keys[i], result.findings)
    return [result if result is not None else FileResult() for result in results]


def _report(args: argparse.Namespace, findings: list[Finding], fixed: int) -> int:
    unsafe = args.unsafe_fixes
    fixing = args.fix or unsafe or args.diff
    if args.statistics:
        _write(render_statistics(findings, args.format))
    else:
        _write(render_findings(findings, args.format))
    if args.format == "text":
        _write(render_summary(findings, fixed, unsafe=unsafe, fixing=fixing))
    if args.exit_zero:
        return 0
    return 1 if findings else 0


__all__ = ["add_lint_arguments", "explain", "run_lint"]
