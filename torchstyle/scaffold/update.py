"""Git for generated projects: the first commit, and ``torchstyle new --update``.

An update renders the template the project was made from (kept in its
``.torchstyle/template.json``) and the template of this torchstyle, and merges the
difference into the user's files three ways with ``git merge-file``: the user's edits stay,
the template's changes arrive, and where both touched the same lines the file gets git's
conflict marks. Files the template added are written; files it dropped are removed only when
the user never changed them.
"""

from __future__ import annotations

import getpass
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from torchstyle import writes
from torchstyle.errors import UserError
from torchstyle.scaffold.project import (
    RECORD,
    TEMPLATES_DIR,
    render_project,
    template_record,
)
from torchstyle.scaffold.source import Requirement, torchstyle_requirement

GIT_TIMEOUT = 60


def git_available() -> bool:
    """True when a ``git`` executable is on the PATH."""
    return shutil.which("git") is not None


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT,
        check=False,
    )


def in_work_tree(root: Path) -> bool:
    """True when ``root`` is inside a git working tree."""
    result = _git(root, "rev-parse", "--is-inside-work-tree")
    return result.returncode == 0 and result.stdout.strip() == "true"


def init_repository(root: Path, message: str, files: list[Path] | None = None) -> str:
    """Makes ``root`` a git repository with ``files`` (default: every file) in a first commit.

    Where git knows no author (a CI machine), the repository gets a local one, so that the
    commit works; the user can change it with ``git config user.name``.

    Args:
        root: The new project.
        message: The first commit's message.
        files: The files to commit (those ``torchstyle new`` wrote); anything else the folder
            holds stays out of the commit, and the returned line names it.

    Returns:
        One line for the user saying what was done.

    Raises:
        UserError: git failed (the message carries git's own).
    """
    if in_work_tree(root):
        return f"git: {root} is inside a git repository already; left to it"
    steps = [["init", "-q"]]
    if _git(root, "config", "user.email").returncode != 0:
        steps.append(["config", "user.email", f"{getpass.getuser()}@localhost"])
    if _git(root, "config", "user.name").returncode != 0:
        steps.append(["config", "user.name", getpass.getuser()])
    added = ["-A"] if files is None else ["--", *(str(p.relative_to(root)) for p in files)]
    steps += [["add", *added], ["-c", "commit.gpgsign=false", "commit", "-q", "-m", message]]
    for step in steps:
        result = _git(root, *step)
        if result.returncode != 0:
            problem = (result.stderr or result.stdout).strip().splitlines()
            raise UserError(
                f"git {step[0]} in {root} failed: {problem[-1] if problem else 'no output'}; "
                "pass --no-git to skip the repository"
            )
    line = "git: a new repository with a first commit (pre-commit install works now)"
    others = _not_committed(root, files)
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        line += f"; the commit holds the generated files only, not what else is here: {shown}"
    return line


def _not_committed(root: Path, files: list[Path] | None) -> list[str]:
    """The top-level entries of ``root`` that none of ``files`` is (nor is inside)."""
    if files is None:
        return []
    tops = {p.relative_to(root).parts[0] for p in files}
    return sorted(
        e.name + ("/" if e.is_dir() else "")
        for e in root.iterdir()
        if e.name not in tops and e.name != ".git"
    )


@dataclass
class UpdateReport:
    """What an update did, file by file (paths relative to the project)."""

    template: str
    old_version: str
    new_version: str
    merged: list[str] = field(default_factory=list)
    conflicts: dict[str, int] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary the CLI prints."""
        out = [
            f"updated from the {self.template} template of torchstyle {self.old_version} "
            f"to that of {self.new_version}:"
        ]
        out += [f"  merged    {path}" for path in self.merged]
        out += [f"  CONFLICT  {path} ({n} conflicts)" for path, n in self.conflicts.items()]
        out += [f"  added     {path}" for path in self.added]
        out += [f"  removed   {path}" for path in self.removed]
        out += [
            f"  kept      {path} (the template dropped it; you changed it)" for path in self.kept
        ]
        if not (self.merged or self.conflicts or self.added or self.removed):
            out.append("  nothing to do: the template has not changed")
        if self.conflicts:
            out.append(
                "resolve the <<<<<<< ======= >>>>>>> marks (yours first, then the template's), "
                "then commit"
            )
        return out


def merge_file(mine: str, base: str, theirs: str, labels: tuple[str, str, str]) -> tuple[str, int]:
    """Three-way merge with ``git merge-file``: the merged text and its number of conflicts.

    Raises:
        UserError: git could not merge (it reports a negative status).
    """
    with tempfile.TemporaryDirectory(prefix="torchstyle-merge-") as tmp:
        paths = []
        for name, text in (("mine", mine), ("base", base), ("theirs", theirs)):
            path = Path(tmp) / name
            writes.atomic_write_text(path, text)
            paths.append(str(path))
        label_args = [arg for label in labels for arg in ("-L", label)]
        result = _git(Path(tmp), "merge-file", "-p", *label_args, *paths)
    if result.returncode < 0 or result.returncode > 127:
        raise UserError(f"git merge-file failed: {result.stderr.strip()}")
    return result.stdout, result.returncode


def _check_tree(root: Path, force: bool) -> None:
    if force:
        return
    if not in_work_tree(root):
        raise UserError(
            f"{root} is not in a git repository, so the update could not be undone; commit "
            "the project to git first, or pass --force"
        )
    status = _git(root, "status", "--porcelain", "--untracked-files=no", ".")
    if status.stdout.strip():
        raise UserError(
            f"{root} has uncommitted changes; commit or stash them first (the update rewrites "
            "files), or pass --force"
        )


def read_record(root: Path) -> dict[str, Any]:
    """The project's :data:`RECORD`.

    Raises:
        UserError: The folder holds no record (it is not a project of ``torchstyle new``).
    """
    path = root.joinpath(*RECORD.parts)
    if not path.is_file():
        raise UserError(
            f"{root} has no {RECORD}, so it was not made by `torchstyle new` (or predates "
            "updates); run --update inside a generated project, or pass --dir"
        )
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is unreadable ({e}); restore it from git") from None
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        raise UserError(f"{path} is not a template record; restore it from git")
    return record


def update_project(
    root: Path,
    *,
    force: bool = False,
    requirement: Requirement | None = None,
    templates_dir: Path = TEMPLATES_DIR,
) -> UpdateReport:
    """Merges the template's changes since the project was made into its files.

    Args:
        root: The project folder (holding :data:`RECORD`).
        force: Update even if the git tree is dirty, or there is no git repository.
        requirement: The dependency on torchstyle of the new template (default: guessed).
        templates_dir: Where the new templates are.

    Returns:
        What changed, file by file.

    Raises:
        UserError: Not a generated project, no git, or a dirty tree without ``force``.
    """
    record = read_record(root)
    if not git_available():
        raise UserError("--update merges with `git merge-file`; install git and run it again")
    _check_tree(root, force)
    name, template = str(record["name"]), str(record["template"])
    requirement = requirement or torchstyle_requirement()
    base = {PurePosixPath(path): str(text) for path, text in record["files"].items()}
    new = render_project(name, template, requirement=requirement, templates_dir=templates_dir)
    report = UpdateReport(template, str(record["torchstyle_version"]), requirement.version)
    labels = ("yours", f"template {report.old_version}", f"template {report.new_version}")
    for path in sorted(set(base) | set(new)):
        _update_file(root, path, base.get(path), new.get(path), labels, report)
    record_path = root.joinpath(*RECORD.parts)
    writes.atomic_write_text(record_path, template_record(name, template, requirement, new))
    return report


def _update_file(
    root: Path,
    path: PurePosixPath,
    old: str | None,
    new: str | None,
    labels: tuple[str, str, str],
    report: UpdateReport,
) -> None:
    target = root.joinpath(*path.parts)
    mine = target.read_text(encoding="utf-8") if target.is_file() else None
    if old == new or mine == new:
        return  # the template did not change it, or the user already has the new text
    if new is None:  # the template dropped the file
        if mine is not None and mine == old:
            target.unlink()
            report.removed.append(str(path))
        elif mine is not None:
            report.kept.append(str(path))
        return
    if mine is None:
        if old is None:  # a new file of the template
            writes.atomic_write_text(target, new)
            report.added.append(str(path))
        return  # the user deleted a file the template changed: it stays deleted
    merged, conflicts = merge_file(mine, old or "", new, labels)
    writes.atomic_write_text(target, merged)
    if conflicts:
        report.conflicts[str(path)] = conflicts
    else:
        report.merged.append(str(path))
