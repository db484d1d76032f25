"""The generated loop keeps pace with the engine: validation, step checkpoints, ``--resume
auto``, ``--amp``, DDP under torchrun, one-line errors with exit code 2, and hints that name
the project's own flags.

The loop is one skeleton for every template, so these run on the classifier (real
subprocesses, tiny models and data); the hint check reads every template's sources.
"""

from __future__ import annotations

import ast
import os
import random
import re
import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.cli_runner import run_python
from tests.conftest import HANG_TIMEOUT, REPO
from torchstyle.engine.checkpoint import load_checkpoint
from torchstyle.scaffold.project import template_names, write_project
from torchstyle.scaffold.source import Requirement

pytestmark = pytest.mark.slow

TINY = ["--width", "8", "--workers", "0", "--log-every", "2"]
TIMEOUT = HANG_TIMEOUT
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")
INDEX = Requirement(line="torchstyle==0", version="0")


def run(root: Path, *args: str, module: bool = False) -> subprocess.CompletedProcess[str]:
    argv = [*(["-m"] if module else []), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return run_python(argv, cwd=root, env=env, timeout=TIMEOUT)


def project(tmp_path: Path, template: str = "classifier") -> Path:
    root, _ = write_project("digit_net", template, tmp_path / template, requirement=INDEX)
    return root


def project_flags(root: Path) -> set[str]:
    """Every flag of the project's train.py and test.py, from their parsers."""
    code = (
        "import train, test\n"
        "for parser in (train.build_parser(), test.build_parser()):\n"
        "    for action in parser._actions:\n"
        "        print(*action.option_strings)\n"
    )
    result = run(root, "-c", code)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def image_folder(root: Path, per_class: int = 40) -> Path:
    """train/{a,b}/ and test/{a,b}/ of 8x8 PNGs: bright squares in a, dark ones in b."""
    rng = random.Random(0)
    for split, count in (("train", per_class), ("test", 5)):
        for label, level in (("a", 200), ("b", 50)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = bytes(min(255, max(0, level + rng.randint(-40, 40))) for _ in range(64))
                Image.frombytes("L", (8, 8), pixels).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """A classifier project, shared by the tests that only read it, and its flags."""
    root = project(tmp_path_factory.mktemp("shared"))
    return root, project_flags(root)


def printed_strings(source: str) -> list[str]:
    """The string constants of a module that it can print: all but docstrings."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in docstrings
    ]


def test_every_hint_a_project_prints_names_one_of_its_flags(tmp_path: Path) -> None:
    for template in template_names():
        root = project(tmp_path, template)
        flags = project_flags(root)
        assert {"--skip-bad-images", "--resume", "--lr"} <= flags
        for path in root.glob("*.py"):
            for text in printed_strings(path.read_text()):
                for flag in FLAG.findall(text):
                    assert flag in flags, f"{template}/{path.name} names {flag}: {text!r}"


def test_a_bad_image_is_found_before_training_with_a_fix_that_exists(
    tmp_path: Path, classifier: tuple[Path, set[str]]
) -> None:
    root = project(tmp_path)
    bad = image_folder(tmp_path / "bad")
    broken = bad / "train" / "b" / "017.png"
    # Truncated: its header still reads; the pixels fail when the data is decoded up front.
    broken.write_bytes(broken.read_bytes()[:60])
    args = [*TINY, "--epochs", "2", "--batch-size", "8", "--save-every", "1"]

    failed = run(root, "train.py", "--data", str(bad), "--run-dir", "runs/resumed", *args)
    assert failed.returncode == 2, failed.stderr
    # The data's decisions are logged first (channels, size); then one line of error.
    lines = failed.stderr.strip().splitlines()
    error = [line for line in lines if not line.startswith("data: ")]
    assert len(error) == 1 and error[0].startswith("train.py: error: "), lines
    assert str(broken) in error[0] and "--skip-bad-images" in error[0]
    assert set(FLAG.findall(error[0])) <= classifier[1]
    # found before the first step: nothing was trained, so nothing was saved
    assert not (root / "runs" / "resumed" / "checkpoints" / "latest.pt").exists()
    # Raised in a loader worker, the error is still one line, without the worker's traceback.
    in_worker = run(
        root, "train.py", "--data", str(bad), "--run-dir", "runs/w", *args, "--workers", "2"
    )
    assert in_worker.returncode == 2
    assert [
        line for line in in_worker.stderr.strip().splitlines() if not line.startswith("data: ")
    ] == error

    skipped = run(
        root, "train.py", "--data", str(bad), "--run-dir", "runs/skip", *args, "--skip-bad-images"
    )
    assert skipped.returncode == 0, skipped.stderr


def test_resume_auto_starts_continues_and_says_finished(tmp_path: Path) -> None:
    root = project(tmp_path)
    first = run(root, "train.py", *TINY, "--epochs", "1", "--run-dir", "runs/r", "--resume", "auto")
    assert first.returncode == 0, first.stderr
    assert "resuming" not in first.stderr
    more = run(root, "train.py", "--epochs", "2", "--run-dir", "runs/r", "--resume", "auto")
    assert more.returncode == 0 and "resuming runs/r after epoch 1" in more.stderr, more.stderr
    done = run(root, "train.py", "--run-dir", "runs/r", "--resume", "auto")
    assert done.returncode == 0, done.stderr
    assert "runs/r has finished its 2 epochs; pass a larger --epochs" in done.stderr
    assert load_checkpoint(root / "runs" / "r" / "checkpoints" / "latest.pt")["epoch"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--resume", "maybe"], "--resume takes no value or 'auto', not 'maybe'"),
        (["--resume"], "--resume: runs/none/config.json does not exist"),
        (["--val-fraction", "1.5"], "--val-fraction must be in [0, 1)"),
        (["--device", "nonsense"], "--device nonsense: no such device"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--data", "no/such/folder"], "data folder no/such/folder does not exist"),
        (["--data", "cifar10", "--data-dir", "nowhere"], "add --download to fetch it"),
    ],
)
def test_a_users_error_is_one_line_and_exit_code_2(
    args: list[str], message: str, classifier: tuple[Path, set[str]]
) -> None:
    root, flags = classifier
    result = run(root, "train.py", "--run-dir", "runs/none", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("train.py: error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert set(FLAG.findall(result.stderr)) <= flags


def test_amp_bf16_trains(tmp_path: Path) -> None:
    root = project(tmp_path)
    result = run(root, "train.py", *TINY, "--epochs", "1", "--amp", "bf16", "--run-dir", "runs/a")
    assert result.returncode == 0, result.stderr
    ckpt = load_checkpoint(root / "runs" / "a" / "checkpoints" / "latest.pt")
    assert ckpt["config"]["amp"] == "bf16"
    assert all(torch.isfinite(v).all() for v in ckpt["net"].values() if v.is_floating_point())


def test_ddp_under_torchrun_trains_and_speaks_once(tmp_path: Path) -> None:
    root = project(tmp_path)
    torchrun = ["torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    train = ["train.py", *TINY, "--epochs", "1", "--device", "cpu", "--run-dir", "runs/ddp"]
    result = run(root, *torchrun, *train, module=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("epoch 1/1: validation") == 1
    assert result.stderr.count("test (") == 1
    ckpt = load_checkpoint(root / "runs" / "ddp" / "checkpoints" / "latest.pt")
    assert ckpt["epoch"] == 1
    # Each of the two processes took every other sample of each global batch of 64.
    single = run(
        root, "train.py", *TINY, "--epochs", "1", "--device", "cpu", "--run-dir", "runs/one"
    )
    assert single.returncode == 0, single.stderr
    assert (
        load_checkpoint(root / "runs" / "one" / "checkpoints" / "latest.pt")["n_iter"]
        == ckpt["n_iter"]
    )
