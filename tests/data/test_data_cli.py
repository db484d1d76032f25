"""The data side through the real CLI, in subprocesses: `predict` on folders, `test --data`
against a run's classes and channels, huge images, and paired data for pix2pix."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import run_cli
from tests.data.helpers import make_image_folder, write_huge_png, write_image

pytestmark = pytest.mark.slow

_TRAIN = ("--epochs", "1", "--image-size", "8", "--batch-size", "4", "--no-progress")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A classifier run trained on an RGB folder of classes cat and dog."""
    tmp = tmp_path_factory.mktemp("cli")
    data = make_image_folder(tmp / "pets", per_class=3)
    run_dir = tmp / "run"
    proc = run_cli(
        "train", "--data", str(data), "--model-arg", "width=8", "--run-dir", str(run_dir), *_TRAIN
    )
    assert proc.returncode == 0, proc.stderr
    return run_dir


def _error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_predict_reads_a_folder_recursively_skipping_hidden_files(run, tmp_path):
    folder = tmp_path / "photos"
    write_image(folder / "b.png", 40)
    write_image(folder / "nested" / "a.png", 120)
    write_image(folder / ".hidden" / "x.png", 120)
    (folder / "._b.png").write_bytes(b"AppleDouble junk")
    (folder / "notes.txt").write_text("not an image")
    single = tmp_path / "single.png"
    write_image(single, 40)
    proc = run_cli("predict", str(run), str(folder), str(single))
    assert proc.returncode == 0, proc.stderr
    images = [line.split("\t")[0] for line in proc.stdout.splitlines()]
    assert images == [str(folder / "b.png"), str(folder / "nested" / "a.png"), str(single)]
    assert all(line.split("\t")[1] in ("cat", "dog") for line in proc.stdout.splitlines())
    (tmp_path / "empty").mkdir()
    assert "holds no images" in _error_line(run_cli("predict", str(run), str(tmp_path / "empty")))
    line = _error_line(run_cli("predict", str(run), str(tmp_path / "missing")))
    assert "no such image file or folder" in line


def test_predict_refuses_an_image_over_the_pixel_limit_in_one_line(run, tmp_path):
    write_huge_png(tmp_path / "huge.png")
    line = _error_line(run_cli("predict", str(run), str(tmp_path / "huge.png")))
    assert "huge.png" in line and "196,000,000 pixels, over the limit" in line


def test_test_on_other_data_checks_the_runs_classes_and_channels(run, tmp_path):
    renamed = make_image_folder(tmp_path / "renamed", classes=("kitten", "puppy"), per_class=1)
    line = _error_line(run_cli("test", str(run), "--data", str(renamed)))
    assert "kitten, puppy" in line and "different classes from the training split" in line
    extra = make_image_folder(tmp_path / "extra", classes=("cat", "dog", "eel"), per_class=1)
    assert "training split: eel" in _error_line(run_cli("test", str(run), "--data", str(extra)))
    gray = make_image_folder(tmp_path / "gray", per_class=1, mode="L")
    line = _error_line(run_cli("test", str(run), "--data", str(gray)))
    assert "1-channel images" in line and "3-channel" in line
    dogs = make_image_folder(tmp_path / "dogs", classes=("dog",), per_class=2)
    shutil.rmtree(dogs / "train")  # evaluation data needs no train/ folder
    proc = run_cli("test", str(run), "--data", str(dogs), "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"samples": 2' in proc.stdout and "no images of class(es) cat" in proc.stderr


def test_a_huge_image_in_a_dataset_is_a_bad_image(tmp_path):
    data = make_image_folder(tmp_path / "pets", per_class=2)
    write_huge_png(data / "train" / "cat" / "huge.png")
    args = ("train", "--data", str(data), "--model-arg", "width=8", *_TRAIN)
    line = _error_line(run_cli(*args, "--run-dir", str(tmp_path / "a")))
    assert "huge.png" in line and "over the limit" in line and "--skip-bad-images" in line
    proc = run_cli(*args, "--skip-bad-images", "--run-dir", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr
    assert "skipped 1 unreadable images" in proc.stderr


def test_pix2pix_trains_on_digit_pairs_and_refuses_class_data(tmp_path):
    line = _error_line(
        run_cli("train", "--model", "pix2pix", "--data", "digits", "--run-dir", str(tmp_path / "x"))
    )
    assert "needs 'paired' data" in line and "--data digits-pairs" in line and "A|B" in line
    assert not (tmp_path / "x").exists()
    run_dir = tmp_path / "p2p"
    proc = run_cli(
        "train", "--model", "pix2pix", "--data", "digits-pairs", "--max-steps", "2",
        "--batch-size", "8", "--model-arg", "ngf=8", "--model-arg", "ndf=8",
        "--run-dir", str(run_dir), "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("test", str(run_dir), "--json")
    assert proc.returncode == 0 and '"samples": 360' in proc.stdout, proc.stderr


def test_a_data_function_in_a_file_trains_and_tests(tmp_path):
    (tmp_path / "mydata.py").write_text(
        "import torch\n"
        "from torch.utils.data import TensorDataset\n\n\n"
        "def make():\n"
        "    x = torch.randn(24, 3, 8, 8, generator=torch.Generator().manual_seed(0))\n"
        "    y = torch.arange(24) % 3\n"
        "    return {'train': TensorDataset(x, y), 'test': TensorDataset(x[:6], y[:6]),\n"
        "            'classes': ['r', 'g', 'b']}\n"
    )
    args = ("--model-arg", "width=8", "--workers", "0", "--run-dir", "run", *_TRAIN)
    proc = run_cli("train", "--data", "mydata.py:make", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("test", "run", "--json", cwd=tmp_path)
    assert proc.returncode == 0 and '"samples": 6' in proc.stdout, proc.stderr
    proc = run_cli("train", "--data", "mydata.py:nope", "--run-dir", "other", cwd=tmp_path)
    line = _error_line(proc)
    assert "has no function 'nope'; it defines: make" in line
