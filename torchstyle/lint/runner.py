"""Linting sources and files: parse once, walk once, filter by noqa, optionally fix.

The entry points for library users are :func:`lint_source` and :class:`Linter`.
"""

from __future__ import annotations

import ast
import codecs
import gc
import io
import re
import sys
import tokenize
import traceback
from collections.abc import Iterable
from dataclasses import dataclass

from torchstyle.lint import noqa, registry
from torchstyle.lint.base import Finding
from torchstyle.lint.checker import Checker
from torchstyle.lint.context import FileContext
from torchstyle.lint.fixes import apply_fixes

UNCHECKED = "TS001"
INTERNAL_ERROR = "TS002"
_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*[-\w.]+", re.MULTILINE)


@dataclass
class SourceFile:
    """A file's text and how to write it back unchanged apart from edits."""

    text: str
    encoding: str = "utf-8"
    bom: bool = False

    def encode(self, text: str) -> bytes:
        """``text`` encoded the way the file was."""
        data = text.encode(self.encoding)
        return codecs.BOM_UTF8 + data if self.bom else data


def decode_source(data: bytes) -> SourceFile:
    """Decodes Python source bytes (UTF-8, a BOM, or a PEP 263 coding cookie).

    Raises:
        UnicodeDecodeError, SyntaxError, LookupError: the bytes are not decodable source.
    """
    bom = data.startswith(codecs.BOM_UTF8)
    if bom:
        data = data[len(codecs.BOM_UTF8) :]
    head = data[:400]
    if b"coding" in head and _COOKIE.search(b"\n".join(head.split(b"\n")[:2])):
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        if encoding.replace("_", "-").lower() not in ("utf-8", "utf-8-sig"):
            return SourceFile(data.decode(encoding), encoding, False)
    return SourceFile(data.decode("utf-8"), "utf-8", bom)


class Linter:
    """Checks sources with a fixed set of rules (one instance per rule for the whole run)."""

    def __init__(
        self, codes: Iterable[str] | None = None, *, target_torch: tuple[int, ...] | None = None
    ) -> None:
        """Builds the rules for ``codes`` (default: every rule that is on by default).

        Args:
            codes: The rule codes to check.
            target_torch: The oldest torch version the code must run on, e.g. ``(2, 4)``;
                rules about deprecations stay quiet about notices from later versions.
        """
        self.target_torch = target_torch
        rules = registry.all_rules()
        chosen = registry.resolve_selection(None) if codes is None else set(codes)
        unknown = chosen - set(rules)
        if unknown:
            raise ValueError(f"unknown rule codes: {sorted(unknown)}")
        self.codes = frozenset(chosen)
        self.rules = [rules[code]() for code in sorted(chosen) if rules[code].code[2] != "0"]
        self.checker = Checker(self.rules)

    def lint(
        self, source: str, path: str = "<string>", ignore: frozenset[str] = frozenset()
    ) -> list[Finding]:
        """Findings in ``source`` (sorted), after ``# noqa`` and the ``ignore`` codes."""
        # An AST is hundreds of thousands of small objects without reference cycles: the
        # cyclic garbage collector would scan them over and over while they are built and
        # walked (it costs a third of the time). Pause it for the file, then restore it.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            findings = self._check(source, path, ignore)
        finally:
            if gc_was_enabled:
                gc.enable()
        if findings:
            suppressions = noqa.scan(source)
            if suppressions is not None:
                # A noqa comment on any line of a multi-line finding counts: after a call's
                # closing parenthesis is where formatters leave it.
                findings = [
                    f
                    for f in findings
                    if f.code == UNCHECKED
                    or not any(
                        suppressions.silences(line, f.code)
                        for line in range(f.line, max(f.line, f.end_line) + 1)
                    )
                ]
        findings.sort(key=Finding.sort_key)
        return findings

    def unchecked(self, path: str, message: str, line: int = 1, col: int = 1) -> list[Finding]:
        """A TS001 finding for a file that could not be checked (if TS001 is selected)."""
        if UNCHECKED not in self.codes:
            return []
        return [
            Finding(path, max(line, 1), max(col, 1), max(line, 1), max(col, 1), UNCHECKED, message)
        ]

    def _check(self, source: str, path: str, ignore: frozenset[str]) -> list[Finding]:
        try:
            tree = ast.parse(source, filename=path)
        except SyntaxError as e:
            message = f"syntax error: {e.msg}"
            if e.msg.startswith(("invalid syntax", "expected")):
                # what newer syntax (PEP 695 generics, ...) looks like to an older parser
                version = f"{sys.version_info.major}.{sys.version_info.minor}"
                message += (
                    f" (read with Python {version}'s grammar; if the file needs a newer "
                    "Python, run torchstyle with that Python)"
                )
            return self.unchecked(path, message, e.lineno or 1, e.offset or 1)
        except (ValueError, RecursionError, MemoryError) as e:
            return self.unchecked(path, f"cannot parse: {e}")
        active = [
            i
            for i, rule in enumerate(self.rules)
            if rule.code not in ignore
            and (not rule.triggers or any(t in source for t in rule.triggers))
        ]
        ctx = FileContext(path, source, tree, self.target_torch)
        try:
            self.checker.check(ctx, active)
        except RecursionError:
            return self.unchecked(path, "the code nests too deeply to check")
        except Exception as e:  # a bug in a rule must not stop the run
            if INTERNAL_ERROR not in self.codes:
                return []
            frame = traceback.extract_tb(e.__traceback__)[-1]
            where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
            message = f"internal error ({type(e).__name__}: {e} at {where}); please report it"
            return [Finding(path, 1, 1, 1, 1, INTERNAL_ERROR, message)]
        return ctx.findings

    def fix(
        self,
        source: str,
        path: str = "<string>",
        ignore: frozenset[str] = frozenset(),
        *,
        unsafe: bool = False,
        max_rounds: int = 10,
    ) -> tuple[str, list[Finding], int]:
        """Applies fixes until none is left; returns (new source, remaining findings, fixes).

        A round whose result does not parse is retried one fix at a time, dropping the fixes
        that break the code; the source is never made invalid.
        """
        fixed = 0
        findings = self.lint(source, path, ignore)
        for _ in range(max_rounds):
            new_source, applied = apply_fixes(source, findings, unsafe=unsafe)
            if not applied:
                break
            if not _parses(new_source):
                new_source, applied = self._fix_one_by_one(source, findings, unsafe)
                if not applied:
                    break
            source = new_source
            fixed += applied
            findings = self.lint(source, path, ignore)
        return source, findings, fixed

    @staticmethod
    def _fix_one_by_one(source: str, findings: list[Finding], unsafe: bool) -> tuple[str, int]:
        applied = 0
        for finding in sorted(findings, key=Finding.sort_key, reverse=True):
            candidate, n = apply_fixes(source, [finding], unsafe=unsafe)
            if n and _parses(candidate):
                source, applied = candidate, applied + 1
        return source, applied


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


_DEFAULT_LINTER: dict[frozenset[str] | None, Linter] = {}


def lint_source(
    source: str, path: str = "<string>", select: Iterable[str] | None = None
) -> list[Finding]:
    """Lints Python ``source``; ``select`` takes codes or prefixes (default: default rules)."""
    key = None if select is None else frozenset(registry.expand(select, option="select"))
    linter = _DEFAULT_LINTER.get(key)
    if linter is None:
        linter = _DEFAULT_LINTER[key] = Linter(key)
    return linter.lint(source, path)
