"""``torchstyle new`` without training: names, templates, rendering, writing and the CLI.

Fast: nothing here trains.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from tests.conftest import HANG_TIMEOUT, REPO
from torchstyle.cli import main as cli_main
from torchstyle.errors import UserError
from torchstyle.scaffold.project import (
    COMMON,
    RECORD,
    TEMPLATES_DIR,
    TemplateError,
    class_name,
    fill_parts,
    list_templates,
    read_parts,
    render_project,
    sort_local_imports,
    template_names,
    validate_name,
    write_project,
)
from torchstyle.scaffold.source import Requirement, torchstyle_requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TEMPLATES = template_names()
FLAGS = (
    "--epochs",
    "--batch-size",
    "--lr",
    "--workers",
    "--seed",
    "--device",
    "--log-every",
    "--eval-every",
    "--run-dir",
    "--resume",
)


def expected_files(name: str) -> set[PurePosixPath]:
    files = {"layers.py", "networks.py", "losses.py", "ops.py", f"{name}.py", "data.py"}
    files |= {"train.py", "test.py", "run.py", "README.md", "pyproject.toml", ".gitignore"}
    files |= {".pre-commit-config.yaml", f"tests/test_{name}.py"}
    return {PurePosixPath(f) for f in files}


def local_imports(source: str, local: set[str]) -> set[str]:
    """The project modules a file imports."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module in local:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in local}
    return found


def test_the_three_templates_are_discovered_with_descriptions() -> None:
    assert set(TEMPLATES) == {"classifier", "gan", "image2image"}
    assert all(t.description for t in list_templates())


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_writes_the_guides_layout(template: str) -> None:
    files = render_project("digit_net", template)
    assert set(files) == expected_files("digit_net")
    for path, text in files.items():
        assert "{{" not in text and "}}" not in text.replace("}}}", ""), f"placeholder in {path}"
        if path.suffix == ".py":
            compile(text, str(path), "exec")


@pytest.mark.parametrize("template", TEMPLATES)
def test_scripts_import_only_the_model_file_and_data(template: str) -> None:
    files = render_project("digit_net", template)
    local = {"layers", "networks", "losses", "ops", "data", "digit_net"}
    for script in ("train.py", "test.py"):
        source = files[PurePosixPath(script)]
        assert local_imports(source, local) == {"digit_net", "data"}, script
        assert "Trainer" not in source, f"{script} must show the loop, not hide it in Trainer"
    model = files[PurePosixPath("digit_net.py")]
    assert local_imports(model, local) == {"networks", "losses", "ops"}
    assert local_imports(files[PurePosixPath("networks.py")], local) == {"layers"}


@pytest.mark.parametrize("template", TEMPLATES)
def test_train_script_has_the_guides_flags_and_pieces(template: str) -> None:
    files = render_project("digit_net", template)
    # The flags every run has live in run.py, next to the loop's.
    train = files[PurePosixPath("train.py")] + files[PurePosixPath("run.py")]
    for flag in FLAGS:
        assert f'"{flag}"' in train, flag
    for piece in (
        "DevicePrefetcher",
        "EfficiencyMeter",
        "RunLogger",
        "CheckpointManager",
        "load_checkpoint",
        "seed_everything",
        "capture_rng_state",
        "restore_rng_state",
        "tqdm",
        "config.txt",
        "config.json",
        ".backward()",
        "zero_grad",
        "n_iter += 1",
    ):
        assert piece in train, piece
    assert "BackgroundGenerator" not in train


@pytest.mark.parametrize("template", TEMPLATES)
def test_project_metadata(template: str) -> None:
    files = render_project("digit_net", template)
    pyproject = tomllib.loads(files[PurePosixPath("pyproject.toml")])
    assert pyproject["project"]["name"] == "digit_net"
    assert any(dep.startswith("torchstyle") for dep in pyproject["project"]["dependencies"])
    assert "lint" in pyproject["tool"]["torchstyle"]
    assert "torchstyle lint" in files[PurePosixPath(".pre-commit-config.yaml")]
    assert "runs/" in files[PurePosixPath(".gitignore")].splitlines()
    readme = files[PurePosixPath("README.md")]
    assert "python train.py" in readme and "python test.py" in readme


@pytest.mark.parametrize(
    "name",
    [
        "",
        "1net",
        "my-net",
        "my net",
        "class",
        "match",
        "MyNet",
        "_private",
        "n\u00e9t",
        "torch",
        "torchstyle",
        "torchvision",
        "numpy",
        "os",
        "json",
        "random",
        "data",
        "layers",
        "networks",
        "train",
        "test",
        "tests",
    ],
)
def test_bad_names_are_refused_with_a_reason(name: str) -> None:
    with pytest.raises(
        UserError, match=r"project name .+(identifier|keyword|lower_with|shadow|own)"
    ):
        validate_name(name)


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("my-net", "my_net"), ("MyNet", "my_net"), ("DCGAN", "dcgan"), ("torch", "torch_net")],
)
def test_the_error_suggests_a_name_that_works(name: str, suggestion: str) -> None:
    with pytest.raises(UserError, match=f"use e.g. '{suggestion}'$"):
        validate_name(name)
    validate_name(suggestion)


@pytest.mark.parametrize("name", ["digit_net", "yolov3", "dcgan", "x", "my_model_2", "torch_utils"])
def test_good_names_pass(name: str) -> None:
    validate_name(name)


def test_class_name_is_capwords() -> None:
    assert class_name("digit_net") == "DigitNet"
    assert class_name("yolov3") == "Yolov3"
    assert class_name("x") == "X"
    assert class_name("pix2pix_hd") == "Pix2pixHd"


def test_local_imports_are_sorted_by_module() -> None:
    source = "import torch\n\nfrom data import a\nfrom alpha import B, c\n\nx = 1\n"
    assert sort_local_imports(source, frozenset({"data", "alpha"})) == (
        "import torch\n\nfrom alpha import B, c\nfrom data import a\n\nx = 1\n"
    )


def test_writes_into_a_new_folder(tmp_path: Path) -> None:
    root, written = write_project("digit_net", "classifier", tmp_path / "proj")
    assert root == tmp_path / "proj"
    assert {PurePosixPath(p.relative_to(root).as_posix()) for p in written} == expected_files(
        "digit_net"
    ) | {RECORD}
    assert all(p.is_file() for p in written)


def test_default_folder_is_the_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    root, _ = write_project("digit_net", "gan")
    assert root == Path("digit_net") and (tmp_path / "digit_net" / "digit_net.py").is_file()


def test_an_empty_folder_is_fine(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    write_project("digit_net", "classifier", tmp_path / "proj")
    assert (tmp_path / "proj" / "train.py").is_file()


def test_existing_folder_is_never_overwritten_without_force(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "train.py").write_text("# mine\n")
    with pytest.raises(UserError, match=r"already exists.*--force"):
        write_project("digit_net", "classifier", root)
    assert (root / "train.py").read_text() == "# mine\n"
    assert sorted(p.name for p in root.iterdir()) == ["train.py"]


def test_force_overwrites_our_files_and_keeps_the_others(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "train.py").write_text("# old\n")
    (root / "notes.txt").write_text("keep me\n")
    write_project("digit_net", "classifier", root, force=True)
    assert "def main" in (root / "train.py").read_text()
    assert (root / "notes.txt").read_text() == "keep me\n"


def test_a_file_in_the_way_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "proj").write_text("")
    with pytest.raises(UserError, match="not a folder"):
        write_project("digit_net", "classifier", tmp_path / "proj", force=True)


def test_bad_name_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        write_project("torch", "classifier", tmp_path / "proj")
    assert not (tmp_path / "proj").exists()


def test_unknown_template_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown template 'nope'; choose from classifier"):
        write_project("digit_net", "nope", tmp_path / "proj")


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("name", ["x", "a_rather_long_name_for_a_model_file"])
def test_generated_code_is_ruff_clean_for_any_name(
    template: str, name: str, tmp_path: Path
) -> None:
    pytest.importorskip("ruff")
    root, _ = write_project(name, template, tmp_path / name)
    for command in (["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=HANG_TIMEOUT,
        )
        assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------- the CLI
def test_cli_entry_point_writes_the_project(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "torchstyle", "new", "digit_net", "--template", "gan"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert "created gan project 'digit_net'" in result.stdout
    assert "  train.py" in result.stdout and "python test.py" in result.stdout
    assert (tmp_path / "digit_net" / "digit_net.py").is_file()


def test_cli_dir_and_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "somewhere" / "else"
    assert cli_main(["new", "digit_net", "--dir", str(target)]) == 0
    assert f"in {target}/" in capsys.readouterr().out
    assert cli_main(["new", "digit_net", "--dir", str(target)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("torchstyle new: error: folder ")
    assert len(error.strip().splitlines()) == 1
    assert cli_main(["new", "digit_net", "--dir", str(target), "--force", "--template", "gan"]) == 0
    assert "GANLoss" in (target / "losses.py").read_text()


@pytest.mark.parametrize(
    ("name", "message"),
    [("torch", "would shadow the package 'torch'"), ("class", "is a Python keyword")],
)
def test_cli_refuses_bad_names_in_one_line(
    name: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["new", name, "--dir", str(tmp_path / "p")]) == 2
    error = capsys.readouterr().err
    assert message in error
    assert len(error.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_cli_rejects_an_unknown_template(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["new", "digit_net", "--template", "nope"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


# ------------------------------------------------------- names packaging does not take
@pytest.mark.parametrize(
    ("name", "suggestion"), [("résumé", "resume"), ("naïve_bayes", "naive_bayes")]
)
def test_a_non_ascii_identifier_is_explained_with_a_suggestion_that_keeps_it(
    name: str, suggestion: str
) -> None:
    assert name.isidentifier()
    with pytest.raises(UserError) as info:
        validate_name(name)
    message = str(info.value)
    assert "is a Python identifier, but" in message and "ASCII" in message
    assert "distribution name" in message and message.endswith(f"use e.g. '{suggestion}'")


# ----------------------------------------------------------- one skeleton, many parts
def test_parts_fill_markers_at_their_indent_and_an_empty_part_takes_its_line(
    tmp_path: Path,
) -> None:
    parts_file = tmp_path / "x.py.parts"
    parts_file.write_text("@@ body\nfor x in y:\n    f(x)\n\n@@ nothing\n@@ last\nz = 1\n")
    parts = read_parts(parts_file)
    assert parts == {"body": "for x in y:\n    f(x)", "nothing": "", "last": "z = 1"}
    skeleton = "def g():\n    {{>body}}\n    {{>nothing}}\n    return 2\n{{>last}}\n"
    assert fill_parts(skeleton, parts, "x") == (
        "def g():\n    for x in y:\n        f(x)\n    return 2\nz = 1\n"
    )
    with pytest.raises(TemplateError, match="no part 'other'"):
        fill_parts("{{>other}}\n", parts, "x")


def test_the_loop_is_written_once_for_every_template() -> None:
    for script in ("train.py.tmpl", "test.py.tmpl"):
        assert (TEMPLATES_DIR / COMMON / script).is_file()
        for template in TEMPLATES:
            assert not (TEMPLATES_DIR / template / script).exists(), f"{template}/{script}"
    skeleton = (TEMPLATES_DIR / COMMON / "train.py.tmpl").read_text()
    shared = [line for line in skeleton.splitlines() if line.strip() and "{{" not in line]
    for template in TEMPLATES:
        train = render_project("digit_net", template)[PurePosixPath("train.py")]
        assert all(line in train for line in shared), template


# What each train.py was before the loop kept pace with the engine; it may not grow.
TRAIN_LINES_BEFORE = {"classifier": 284, "gan": 307, "image2image": 327}


@pytest.mark.parametrize("template", TEMPLATES)
def test_train_py_is_no_longer_than_before(template: str) -> None:
    train = render_project("digit_net", template)[PurePosixPath("train.py")]
    assert len(train.splitlines()) <= TRAIN_LINES_BEFORE[template]
    for piece in ("--save-every", "--amp", "torchrun", "val/", "--resume auto"):
        assert piece in train + render_project("digit_net", template)[PurePosixPath("run.py")]


# ------------------------------------------------------------ the dependency's source
def test_the_dependency_names_where_torchstyle_comes_from(tmp_path: Path) -> None:
    from torchstyle import __version__

    assert torchstyle_requirement("index").line == f"torchstyle=={__version__}"
    url = "git+https://example.org/torchstyle.git@v1"
    assert torchstyle_requirement(url).line == f"torchstyle @ {url}"
    assert torchstyle_requirement(str(tmp_path)).line == f"torchstyle @ {tmp_path.as_uri()}"
    with pytest.raises(UserError, match=r"--torchstyle-source .*no such folder or wheel"):
        torchstyle_requirement(str(tmp_path / "nope"))
    # Run from a checkout (as here, on PYTHONPATH): the checkout itself.
    assert torchstyle_requirement().line == f"torchstyle @ {REPO.as_uri()}"
    files = render_project("digit_net", "gan", requirement=Requirement("torchstyle @ x", "9.9"))
    pyproject = tomllib.loads(files[PurePosixPath("pyproject.toml")])
    assert pyproject["project"]["dependencies"] == ["torchstyle @ x"]
    assert "Made with torchstyle 9.9" in files[PurePosixPath("pyproject.toml")]


# ------------------------------------------------------------------------------ git
@pytest.mark.skipif(not __import__("shutil").which("git"), reason="needs git")
def test_cli_makes_a_git_repository_with_a_first_commit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "proj"
    assert cli_main(["new", "digit_net", "--dir", str(target)]) == 0
    assert "git: a new repository with a first commit" in capsys.readouterr().out
    log = subprocess.run(
        ["git", "log", "--format=%s"], cwd=target, capture_output=True, text=True, check=True
    )
    assert log.stdout.startswith("torchstyle new digit_net --template classifier")
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=target, capture_output=True, text=True, check=True
    )
    assert status.stdout == ""  # every file is in the first commit
    plain = tmp_path / "plain"
    assert cli_main(["new", "digit_net", "--dir", str(plain), "--no-git"]) == 0
    assert not (plain / ".git").exists()


@pytest.mark.parametrize("where", ["/proc/torchstyle-project", "file/project"])
def test_a_folder_that_cannot_hold_the_project_is_one_line_and_exit_2(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    target = where if where.startswith("/") else str(tmp_path / where)
    code = cli_main(["new", "x", "--dir", target, "--no-git"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"cannot create the project in {target}" in err and "pass another --dir" in err
    assert not Path(target).exists()


def test_force_commits_only_the_generated_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    target = tmp_path / "existing"
    (target / "data").mkdir(parents=True)
    (target / "secret.env").write_text("TOKEN=1\n")
    (target / "data" / "big.csv").write_text("a,b\n")
    assert cli_main(["new", "digit_net", "--dir", str(target), "--force", "--git"]) == 0
    out = capsys.readouterr().out
    assert "not what else is here: data/, secret.env" in out, out
    committed = subprocess.run(
        ["git", "ls-files"], cwd=target, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "train.py" in committed and "secret.env" not in committed
    assert not [f for f in committed if f.startswith("data/")]


def test_the_generated_project_holds_out_one_true_validation_split(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging
    import sys

    root, _ = write_project("digit_net", "classifier", tmp_path / "proj")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "data", raising=False)
    import data  # the generated project's data.py

    with caplog.at_level(logging.INFO):
        loaders = data.build_loaders(
            data="digits", data_dir=None, download=False, image_size=None, batch_size=64,
            val_fraction=0.1, skip_bad_images=False, workers=0, seed=0, pin_memory=False,
        )  # fmt: skip
    train, val = len(loaders.train.dataset), len(loaders.val.dataset)
    assert train + val == 1437  # digits' whole training split: nothing discarded
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"{val} of the 1437 training images held out" in said, said
    assert "held out of" not in said  # torchstyle held out nothing of its own
    monkeypatch.delitem(sys.modules, "data", raising=False)
