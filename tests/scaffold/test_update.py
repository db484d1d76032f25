"""``torchstyle new --update``: a project made from an older template takes the new one.

The older template version is a fixture: a copy of today's templates with known lines as
they were "before", rendered with a pin to torchstyle 0.0.1. Each test generates a project
from it, commits it, edits two files as a user would, runs the real CLI's ``--update`` and
reads the files back. Nothing trains: git subprocesses only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import HANG_TIMEOUT, run_cli
from torchstyle import __version__
from torchstyle.scaffold.project import RECORD, TEMPLATES_DIR, template_names, write_project
from torchstyle.scaffold.source import Requirement
from torchstyle.scaffold.update import init_repository

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

OLD_VERSION = "0.0.1"
# What the templates said "before": (file under templates/, today's text, the old text).
NEW_DOC = "Trains {{Name}} with the style guide's training loop, readable top to bottom."
OLD_DOC = "Trains {{Name}} with the guide's loop."
NEW_LOG_EVERY = 'run.add_argument("--log-every", type=int, default=10,'
OLD_LOG_EVERY = 'run.add_argument("--log-every", type=int, default=20,'
CHANGES = [
    ("common/train.py.tmpl", NEW_DOC, OLD_DOC),
    ("common/run.py.tmpl", NEW_LOG_EVERY, OLD_LOG_EVERY),
]
# A file the old template did not have: the update adds it.
NEW_FILE = "common/dot-pre-commit-config.yaml.tmpl"


def old_templates(tmp_path: Path) -> Path:
    """Today's templates with CHANGES undone and NEW_FILE missing: an older version."""
    old = tmp_path / "old_templates"
    shutil.copytree(TEMPLATES_DIR, old)
    for relative, new, before in CHANGES:
        path = old / relative
        text = path.read_text()
        assert text.count(new) == 1, f"{relative} no longer holds {new!r}: update the fixture"
        path.write_text(text.replace(new, before))
    (old / NEW_FILE).unlink()
    return old


def git(root: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, timeout=HANG_TIMEOUT, check=True
    )
    return result.stdout


def old_project(tmp_path: Path, template: str) -> Path:
    """A project made by the older template, committed to git."""
    requirement = Requirement(line=f"torchstyle=={OLD_VERSION}", version=OLD_VERSION)
    root, _ = write_project(
        "my_model",
        template,
        tmp_path / "my_model",
        requirement=requirement,
        templates_dir=old_templates(tmp_path),
    )
    init_repository(root, "first")
    return root


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("template", template_names())
def test_update_keeps_the_users_edits_applies_the_templates_and_marks_conflicts(
    template: str, tmp_path: Path
) -> None:
    root = old_project(tmp_path, template)
    # The user's edits: train.py, a flag's help (the template left it) and the docstring's
    # first line (the template changed it too: a conflict); run.py, the seed's default.
    edit(root / "train.py", 'help="epochs in total', 'help="how many epochs in total')
    edit(root / "train.py", "Trains MyModel with the guide's loop.", "Trains MyModel, my way.")
    edit(root / "run.py", '"--seed", type=int, default=0,', '"--seed", type=int, default=7,')
    git(root, "commit", "-qam", "my edits")

    result = run_cli("new", "--update", "--torchstyle-source", "index", cwd=root)
    assert result.returncode == 1, result.stdout + result.stderr  # 1: conflicts to resolve
    assert "CONFLICT  train.py (1 conflicts)" in result.stdout
    assert "merged    run.py" in result.stdout
    assert "merged    pyproject.toml" in result.stdout
    assert "added     .pre-commit-config.yaml" in result.stdout
    assert f"torchstyle {OLD_VERSION} to that of {__version__}" in result.stdout

    train = (root / "train.py").read_text()
    assert 'help="how many epochs in total' in train  # the user's edit, away from the template's
    assert (
        "<<<<<<< yours\nTrains MyModel, my way.\n"
        "=======\nTrains MyModel with the style guide's training loop, readable top to bottom.\n"
        f">>>>>>> template {__version__}\n"
    ) in train.replace('"""', "")
    run = (root / "run.py").read_text()
    assert '"--seed", type=int, default=7,' in run  # the user's
    assert '"--log-every", type=int, default=10,' in run  # the template's
    assert "<<<<<<<" not in run
    assert f'"torchstyle=={__version__}"' in (root / "pyproject.toml").read_text()
    assert (root / ".pre-commit-config.yaml").is_file()
    record = json.loads(root.joinpath(*RECORD.parts).read_text())
    assert record["torchstyle_version"] == __version__
    assert record["template"] == template and record["name"] == "my_model"


def test_an_unchanged_project_takes_the_changes_without_conflicts(tmp_path: Path) -> None:
    root = old_project(tmp_path, "classifier")
    result = run_cli("new", "--update", "--torchstyle-source", "index", cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CONFLICT" not in result.stdout
    fresh, _ = write_project(
        "my_model",
        "classifier",
        tmp_path / "fresh",
        requirement=Requirement(line=f"torchstyle=={__version__}", version=__version__),
    )
    # The updated project is file for file what today's template makes.
    for path in fresh.rglob("*"):
        if path.is_file():
            relative = path.relative_to(fresh)
            assert (root / relative).read_text() == path.read_text(), relative
    git(root, "commit", "-qam", "update")
    again = run_cli("new", "--update", "--torchstyle-source", "index", cwd=root)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_update_refuses_a_dirty_tree_unless_forced(tmp_path: Path) -> None:
    root = old_project(tmp_path, "gan")
    edit(root / "run.py", '"--seed", type=int, default=0,', '"--seed", type=int, default=7,')
    refused = run_cli("new", "--update", cwd=root)
    assert refused.returncode == 2
    assert "uncommitted changes; commit or stash them first" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "default=20" in (root / "run.py").read_text()  # nothing written
    forced = run_cli("new", "--update", "--force", "--torchstyle-source", "index", cwd=root)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    run = (root / "run.py").read_text()
    assert "default=7" in run and '"--log-every", type=int, default=10,' in run


def test_update_outside_a_generated_project_says_what_to_do(tmp_path: Path) -> None:
    result = run_cli("new", "--update", cwd=tmp_path)
    assert result.returncode == 2
    assert "was not made by `torchstyle new`" in result.stderr
    named = run_cli("new", "my_model", "--update", cwd=tmp_path)
    assert named.returncode == 2 and "--update takes no NAME" in named.stderr


def test_a_file_the_template_dropped_goes_only_if_untouched(tmp_path: Path) -> None:
    root = old_project(tmp_path, "classifier")
    record_path = root.joinpath(*RECORD.parts)
    record = json.loads(record_path.read_text())
    # As if the old template had shipped two more files, one of them edited since.
    for name in ("notes.md", "extra.md"):
        record["files"][name] = "from the old template\n"
        (root / name).write_text("from the old template\n")
    (root / "extra.md").write_text("mine now\n")
    record_path.write_text(json.dumps(record))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "old files")
    result = run_cli("new", "--update", "--torchstyle-source", "index", cwd=root)
    assert "removed   notes.md" in result.stdout and not (root / "notes.md").exists()
    assert "kept      extra.md" in result.stdout
    assert (root / "extra.md").read_text() == "mine now\n"
