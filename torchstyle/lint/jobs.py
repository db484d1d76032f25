"""Checking files: each with its own configuration, in this process or in worker processes.

``--jobs N`` spreads the files over N processes (default: every core this process may use).
Each file is read, decoded, linted (and fixed) entirely inside one worker, which returns its
findings; the parent prints them in the order the files were found, so the output does not
depend on the number of jobs.
"""

from __future__ import annotations

import gc
import os
import stat
from collections.abc import Callable, Iterator, Sequence

from torchstyle.lint import files, notebook, registry
from torchstyle.lint.config import ConfigFinder, LintConfig, validate_codes
from torchstyle.lint.options import FileResult, Options
from torchstyle.lint.runner import Linter, decode_source
from torchstyle.writes import WriteError, atomic_write

#: Below this many files the run stays in one process: starting workers would cost more.
MIN_FILES_PER_POOL = 16


def available_cores() -> int:
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Setting:
    """The linter and per-file ignores of one configuration (the language server uses it too)."""

    def __init__(self, config: LintConfig, options: Options) -> None:
        validate_codes(config)
        codes = registry.resolve_selection(
            options.select if options.select is not None else config.select,
            [*config.extend_select, *options.extend_select],
            [*config.ignore, *options.ignore],
        )
        self.linter = Linter(codes, target_torch=config.target_torch)
        self.ignores = [
            (pattern, frozenset(registry.expand(codes, option="per-file-ignores")))
            for glob, codes in config.per_file_ignores.items()
            for pattern in files.compile_patterns([glob], config.root)
        ]

    def ignored_codes(self, path: str) -> frozenset[str]:
        """The codes the per-file ignores switch off for the file at ``path``."""
        out: frozenset[str] = frozenset()
        for pattern, codes in self.ignores:
            if files.is_excluded_anywhere(path, [pattern]):
                out |= codes
        return out


class FileChecker:
    """Checks files with the configuration that applies to each (one per process)."""

    def __init__(self, options: Options, finder: ConfigFinder) -> None:
        self.options = options
        self.finder = finder
        self._settings: dict[str | None, Setting] = {}

    def setting(self, pyproject: str | None) -> Setting:
        """The linter and ignores for the configuration in ``pyproject`` (None: defaults)."""
        setting = self._settings.get(pyproject)
        if setting is None:
            config = self.finder.config(pyproject)
            setting = self._settings[pyproject] = Setting(config, self.options)
        return setting

    def check_file(self, path: str, pyproject: str | None) -> FileResult:
        """Reads, checks and (when asked) fixes the file at ``path``."""
        setting = self.setting(pyproject)
        shown = os.path.normpath(path)
        try:
            mode = os.stat(path).st_mode
            if not stat.S_ISREG(mode):
                # a FIFO or a device would block the read, or never end
                return FileResult(setting.linter.unchecked(shown, "not a regular file; skipped"))
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            message = f"cannot read the file: {e.strerror}"
            return FileResult(setting.linter.unchecked(shown, message))
        return self.check_bytes(data, path, shown, pyproject, write=True)

    def check_bytes(
        self, data: bytes, path: str, shown: str, pyproject: str | None, *, write: bool
    ) -> FileResult:
        """Checks source ``data`` known as ``shown``; ``write`` puts fixes back into ``path``."""
        setting = self.setting(pyproject)
        if files.is_notebook(path):
            return self._check_notebook(data, path, shown, setting, write=write)
        linter, options = setting.linter, self.options
        try:
            source = decode_source(data)
        except (UnicodeDecodeError, SyntaxError, LookupError) as e:
            return FileResult(linter.unchecked(shown, f"cannot decode the file: {e}"))
        ignore = setting.ignored_codes(path)
        if not options.fixing:
            return FileResult(linter.lint(source.text, shown, ignore))
        new_text, remaining, fixed = linter.fix(source.text, shown, ignore, unsafe=options.unsafe)
        result = FileResult(remaining, fixed=fixed if new_text != source.text else 0)
        return _put_back(
            result,
            linter,
            (path, shown),
            (source.text, new_text),
            source.encode,
            (write, options.diff),
        )

    def _check_notebook(
        self, data: bytes, path: str, shown: str, setting: Setting, *, write: bool
    ) -> FileResult:
        linter, options = setting.linter, self.options
        try:
            raw = data.decode("utf-8")
            book = notebook.parse(raw)
        except (UnicodeDecodeError, notebook.NotebookError) as e:
            return FileResult(linter.unchecked(shown, f"cannot read the notebook: {e}"))
        ignore = setting.ignored_codes(path)
        if not options.fixing:
            return FileResult([book.to_cells(f) for f in linter.lint(book.source, shown, ignore)])
        new_source, _, fixed = linter.fix(book.source, shown, ignore, unsafe=options.unsafe)
        new_raw = book.with_source(new_source) if new_source != book.source else raw
        if new_raw is None or new_raw == raw:
            # nothing changed, or the fixes could not be split back into the cells
            new_raw, fixed = raw, 0
        else:
            book = notebook.parse(new_raw)
        remaining = [book.to_cells(f) for f in linter.lint(book.source, shown, ignore)]
        result = FileResult(remaining, fixed=fixed)
        encode = lambda text: text.encode("utf-8")  # noqa: E731
        return _put_back(
            result, linter, (path, shown), (raw, new_raw), encode, (write, options.diff)
        )


def _put_back(
    result: FileResult,
    linter: Linter,
    where: tuple[str, str],
    texts: tuple[str, str],
    encode: Callable[[str], bytes],
    how: tuple[bool, bool],
) -> FileResult:
    """Hands the fixed text back (standard input), as a diff, or writes it to the file.

    ``where`` is (the file's path, its name in the output); ``texts`` (old text, fixed text);
    ``how`` (write to the file, show a diff instead).
    """
    (path, shown), (old, new), (write, diff) = where, texts, how
    if not write:
        result.output = new
    elif new == old:
        pass
    elif diff:
        result.diff = unified_diff(old, new, shown)
    else:
        data = encode(new)
        try:
            # through a symlink to the file it names, as an editor saves it
            atomic_write(os.path.realpath(path), lambda f: f.write(data))
        except WriteError as e:
            result.fixed = 0
            result.findings += linter.unchecked(shown, f"cannot write the fixes: {e.cause}")
    return result


def unified_diff(old: str, new: str, path: str) -> str:
    """A unified diff of ``old`` -> ``new`` with ``a/`` and ``b/`` prefixes."""
    import difflib

    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


_WORKER: FileChecker | None = None


def _start_worker(options: Options) -> None:
    global _WORKER
    _WORKER = FileChecker(options, ConfigFinder())


def _check_in_worker(item: tuple[str, str | None]) -> FileResult:
    assert _WORKER is not None, "worker not started"
    return _WORKER.check_file(*item)


def check_files(
    items: Sequence[tuple[str, str | None]],
    options: Options,
    finder: ConfigFinder,
    jobs: int,
) -> Iterator[FileResult]:
    """Checks each ``(path, pyproject)`` of ``items``; results come in the order of ``items``."""
    jobs = max(1, min(jobs, len(items) // (MIN_FILES_PER_POOL // 2) or 1))
    if jobs == 1 or len(items) < MIN_FILES_PER_POOL:
        checker = FileChecker(options, finder)
        for path, pyproject in items:
            yield checker.check_file(path, pyproject)
        return
    import multiprocessing  # a run of a few files never starts workers: imported only here

    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    chunk = max(1, min(64, len(items) // (jobs * 8)))
    # Objects that exist at fork time are shared copy-on-write; a garbage collection in a
    # worker would touch (and so copy) all of them. Freeze them out of the collector's reach.
    gc.freeze()
    try:
        with context.Pool(jobs, initializer=_start_worker, initargs=(options,)) as pool:
            yield from pool.imap(_check_in_worker, items, chunksize=chunk)
    finally:
        gc.unfreeze()
