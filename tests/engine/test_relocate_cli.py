"""Runs are relocatable: paths are recorded absolute and compared resolved, so a run opens
from any directory and after its folder is moved; data that moved is one line naming --data.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from torchstyle.config import TrainConfig
from torchstyle.data.registry import absolute_data, data_moved, same_data
from torchstyle.engine.resume_policy import check_resume


def _photos(root: Path) -> Path:
    for split, n in (("train", 3), ("test", 1)):
        for label, colour in (("cat", 40), ("dog", 200)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("L", (10, 10), color=colour + i).save(folder / f"{i}.png")
    return root


def test_recorded_data_paths_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_data("digits") == "digits"
    assert absolute_data("pkg.mod:load") == "pkg.mod:load"
    assert absolute_data("../photos") == str((tmp_path / ".." / "photos").resolve())
    assert absolute_data("data.py:load") == f"{tmp_path.resolve() / 'data.py'}:load"
    cfg = TrainConfig(data="photos", run_dir="runs/x", weights="w.safetensors")
    cfg.validate()
    assert cfg.data == str(tmp_path.resolve() / "photos")
    assert Path(cfg.run_dir).is_absolute() and Path(cfg.weights).is_absolute()


def test_the_same_folder_given_another_way_is_the_same_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    saved = {"data": str(tmp_path / "photos")}
    assert same_data(saved["data"], "photos") and same_data(saved["data"], "./photos/")
    assert not check_resume(saved, {"data": "./photos"}, run_dir=tmp_path)
    assert data_moved(str(tmp_path / "gone"), "photos")
    assert not data_moved(str(tmp_path / "photos"), "digits")


@pytest.mark.slow
def test_a_moved_run_opens_from_a_third_directory(tmp_path, cli):
    first, second, third = (tmp_path / d for d in ("first", "second", "third"))
    for d in (first, second, third):
        d.mkdir()
    _photos(first / "photos")
    common = ("--batch-size", "4", "--no-progress", "--model", "mlp", "--epochs", "9")
    proc = cli(
        "train", "--data", "photos", "--max-steps", "2", "--run-dir", "r", *common, cwd=first
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((first / "r" / "config.json").read_text())["data"] == str(first / "photos")
    # The same folder as an absolute path is not "changed --data".
    proc = cli(
        "train", "--resume", "r", "--data", str(first / "photos"), "--max-steps", "3", cwd=first
    )
    assert proc.returncode == 0, proc.stderr

    shutil.move(first / "r", second / "moved")
    run = str(second / "moved")
    proc = cli("test", run, "--json", cwd=third)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["samples"] == 2
    proc = cli("predict", run, str(first / "photos" / "test" / "cat" / "0.png"), cwd=third)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\t")[1] in ("cat", "dog")
    proc = cli("export", run, "--format", "pt2", cwd=third)
    assert proc.returncode == 0, proc.stderr
    assert (second / "moved" / "export" / "model.pt2").is_file()
    proc = cli("train", "--resume", run, "--max-steps", "4", "--no-progress", cwd=third)
    assert proc.returncode == 0, proc.stderr

    shutil.move(first / "photos", tmp_path / "photos2")
    proc = cli("test", run, cwd=third)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "--data NEW_PATH" in proc.stderr
    proc = cli("test", run, "--data", str(tmp_path / "photos2"), cwd=third)
    assert proc.returncode == 0, proc.stderr
    proc = cli(
        "train",
        "--resume",
        run,
        "--data",
        "../photos2",
        "--max-steps",
        "5",
        "--no-progress",
        cwd=third,
    )
    assert proc.returncode == 0, proc.stderr
