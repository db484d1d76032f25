"""Bad input: a one-line error naming the problem and the fix, exit code 2, nothing lost."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.data.helpers import make_image_folder

# Every test here trains in subprocesses (the real CLI, torchrun).
pytestmark = pytest.mark.slow

FAST = ("--model-arg", "width=8", "--no-progress")


def snapshot(folder: Path) -> dict[str, str]:
    """Hash of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    proc = run_cli("train", "--epochs", "1", "--run-dir", str(run_dir), *FAST)
    assert proc.returncode == 0, proc.stderr
    return run_dir


@pytest.fixture
def existing_run(finished_run, tmp_path):
    """A private copy of a finished run, and its file hashes."""
    run_dir = tmp_path / "existing"
    shutil.copytree(finished_run, run_dir)
    return run_dir, snapshot(run_dir)


def assert_clean_error(proc, *fragments: str, code: int = 2) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


def _data(tmp_path: Path, kind: str) -> Path:
    root = tmp_path / "data"
    if kind == "mismatch":
        make_image_folder(root)
        shutil.rmtree(root / "test" / "dog")
        make_image_folder(tmp_path / "other", classes=("eel",))
        shutil.move(tmp_path / "other" / "test" / "eel", root / "test" / "eel")
    elif kind == "empty-class":
        make_image_folder(root)
        (root / "train" / "bird").mkdir()
        (root / "test" / "bird").mkdir()
    return root


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ("--data", "/no/such/folder"),
            ("data folder /no/such/folder does not exist", "--data digits"),
        ),
        (
            ("--data", "{mismatch}"),
            # A class without test images is fine; one test has and train lacks is not.
            ("different classes from the training split", "eel (not among cat, dog)"),
        ),
        (("--data", "{empty-class}"), ("holds no images", "bird")),
        (
            ("--model", "resnet9000"),
            ("unknown model 'resnet9000'", "known models:", "classifier", "dcgan"),
        ),
        (("--epochs", "-1"), ("--epochs must be an integer >= 0, got -1",)),
        (("--batch-size", "0"), ("--batch-size must be a positive integer, got 0",)),
        (("--lr", "-0.1"), ("--lr must be a positive number",)),
        (("--model-arg", "depth=3"), ("unexpected keyword argument 'depth'", "--model-arg")),
        (("--resume", "/no/such/run"), ("--resume /no/such/run: no such run folder",)),
        (("--device", "cuda"), ("CUDA is not available", "--device cpu")),
        (("--config", "/no/such.toml"), ("config file /no/such.toml does not exist",)),
    ],
    ids=[
        "missing-data",
        "class-mismatch",
        "empty-class",
        "unknown-model",
        "negative-epochs",
        "zero-batch",
        "negative-lr",
        "unknown-model-arg",
        "resume-missing",
        "no-cuda",
        "missing-config",
    ],
)
def test_bad_input_is_one_clean_line_and_loses_nothing(tmp_path, existing_run, args, fragments):
    run_dir, before = existing_run
    args = tuple(str(_data(tmp_path, a[1:-1])) if a.startswith("{") else a for a in args)
    new_dir = tmp_path / "new-run"
    proc = run_cli("train", *args, "--run-dir", str(new_dir), *FAST)
    assert_clean_error(proc, *fragments)
    assert not new_dir.exists(), "a failed start must not leave a run folder behind"
    assert snapshot(run_dir) == before


def test_existing_run_folder_is_refused(existing_run):
    run_dir, before = existing_run
    proc = run_cli("train", "--epochs", "1", "--run-dir", str(run_dir), *FAST)
    assert_clean_error(proc, "already exists", f"--resume {run_dir}", "--overwrite")
    assert snapshot(run_dir) == before


def test_truncated_checkpoint_is_refused_and_kept(existing_run):
    run_dir, _ = existing_run
    latest = run_dir / "checkpoints" / "latest.pt"
    latest.write_bytes(latest.read_bytes()[:5000])
    before = snapshot(run_dir)
    proc = run_cli("train", "--resume", str(run_dir), "--epochs", "2")
    assert_clean_error(proc, "truncated or corrupt", str(latest))
    assert snapshot(run_dir) == before


def test_corrupt_image_names_the_file_or_is_skipped_and_counted(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=4)
    bad = root / "train" / "dog" / "2.png"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated PNG
    common = ("--data", str(root), "--image-size", "8", "--batch-size", "4", "--epochs", "1", *FAST)
    proc = run_cli("train", *common, "--run-dir", str(tmp_path / "a"))
    assert_clean_error(proc, f"cannot read image {bad}", "--skip-bad-images")
    proc = run_cli("train", *common, "--skip-bad-images", "--run-dir", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr
    assert "skipped 1 unreadable images" in proc.stderr


def test_predict_and_test_on_missing_run(tmp_path):
    for command in ("test", "predict"):
        extra = ("x.png",) if command == "predict" else ()
        proc = run_cli(command, str(tmp_path / "nope"), *extra)
        assert_clean_error(proc, "does not exist")
