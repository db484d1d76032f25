"""Never lose a user's files or a run: each case run through the real CLI, files hashed.

The run folder's marker and guarded overwrite, the lock, ``--resume auto``, checkpoints every
N steps written in the background, a run folder deleted under a run, resumes with changed
flags, and the one-line errors for impossible paths and files.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli_runner import run_python
from tests.conftest import HANG_TIMEOUT, REPO, run_cli
from tests.engine.conftest import read_jsonl
from tests.engine.test_rundir import tree_digest
from torchstyle.cli import main
from torchstyle.engine.checkpoint import load_checkpoint
from torchstyle.engine.rundir import read_history

pytestmark = pytest.mark.slow

# A tiny MLP on digits, all 1437 training images (no validation split), batch 64 -> 23 steps
# an epoch.
TINY = (
    "--model",
    "mlp",
    "--data",
    "digits",
    "--val-split",
    "0",
    "--model-arg",
    "hidden=[16]",
    "--log-every",
    "5",
    "--no-progress",
)
STEPS_PER_EPOCH = 23


def train(run_dir: Path, *extra: str, ok: bool = True, cwd: Path | None = None):
    proc = run_cli("train", *TINY, "--run-dir", str(run_dir), *extra, cwd=cwd)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def fault(mode: str, n: int, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    script = Path(__file__).with_name("fault_run.py")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [str(script), mode, str(n), "train", *TINY, "--run-dir", str(run_dir), *extra]
    return run_python(argv, env=env, timeout=HANG_TIMEOUT)


def assert_one_line_error(proc, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "latest.pt")["net"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs"


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory) -> Path:
    """A finished one-epoch run; tests copy it before changing anything."""
    run_dir = tmp_path_factory.mktemp("base") / "run"
    train(run_dir, "--epochs", "1")
    return run_dir


def copy_run(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(run, target)
    return target


# ---------------------------------------------------------------- 1. guarded overwrite
def test_overwrite_refuses_a_folder_that_is_not_a_run_and_touches_nothing(tmp_path):
    precious = tmp_path / "precious"
    (precious / "photos").mkdir(parents=True)
    (precious / "photos" / "cat.jpg").write_bytes(b"\xff\xd8 a photo")
    (precious / "thesis.tex").write_text("\\documentclass{article} years of work")
    before = tree_digest(precious)
    proc = train(precious, "--epochs", "0", "--overwrite", ok=False)
    assert_one_line_error(proc, "not a torchstyle run folder")
    assert tree_digest(precious) == before


@pytest.mark.parametrize("target", [".", ".."])
def test_overwrite_refuses_the_working_directory_and_its_parents(tmp_path, target):
    cwd = tmp_path / "project"
    (cwd / "data").mkdir(parents=True)
    (cwd / "data" / "train.csv").write_text("x,y\n1,2\n")
    (cwd / "train.py").write_text("print('mine')\n")
    before = tree_digest(tmp_path)
    proc = train(Path(target), "--epochs", "0", "--overwrite", ok=False, cwd=cwd)
    assert_one_line_error(proc, "--overwrite refuses")
    assert tree_digest(tmp_path) == before


def test_overwrite_replaces_a_run_folder(one_epoch, tmp_path):
    run = copy_run(one_epoch, tmp_path)
    (run / "checkpoints" / "epoch_0009.pt").write_bytes(b"old")  # only a run's own files
    train(run, "--epochs", "0", "--overwrite")
    assert not (run / "checkpoints").exists()  # --epochs 0 saves no checkpoint
    assert (run / ".torchstyle-run").is_file() and (run / "config.json").is_file()


# ---------------------------------------------------------------- 2. resume with changes
@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (("--optimizer", "sgd"), "--optimizer 'adamw' -> 'sgd'"),
        (("--image-size", "16"), "--image-size 8 -> 16"),
        (("--model-arg", "hidden=[32]"), "--model-args"),
        (("--run-dir", "elsewhere"), "--run-dir"),
        (("--batch-size", "32"), "--batch-size 64 -> 32"),
        (("--data", "synthetic"), "--data 'digits' -> 'synthetic'"),
        (("--overwrite",), "would delete the run"),
    ],
)
def test_a_refused_resume_leaves_the_run_byte_identical(one_epoch, tmp_path, flags, fragment):
    run = copy_run(one_epoch, tmp_path)
    before = tree_digest(run)
    proc = run_cli("train", "--resume", str(run), "--epochs", "2", *flags, cwd=tmp_path)
    assert_one_line_error(proc, fragment)
    assert tree_digest(run) == before
    resumed = run_cli("train", "--resume", str(run), "--epochs", "2")  # the run is not lost
    assert resumed.returncode == 0, resumed.stderr


def test_resume_with_a_new_lr_trains_with_it_and_records_it(one_epoch, tmp_path):
    run = copy_run(one_epoch, tmp_path)
    proc = run_cli("train", "--resume", str(run), "--epochs", "2", "--lr", "1e-5")
    assert proc.returncode == 0, proc.stderr
    rows = [r for r in read_jsonl(run / "metrics.jsonl") if "train/lr" in r]
    assert {r["train/lr"] for r in rows if r["step"] <= STEPS_PER_EPOCH} == {1e-3}
    assert {r["train/lr"] for r in rows if r["step"] > STEPS_PER_EPOCH} == {1e-5}
    assert json.loads((run / "config.json").read_text())["lr"] == 1e-5
    (entry,) = read_history(run)
    assert entry["step"] == STEPS_PER_EPOCH
    assert entry["changed"] == {"epochs": [1, 2], "lr": [1e-3, 1e-5]}


def test_cosine_resumed_with_more_epochs_is_extended_not_restarted(tmp_path):
    run = tmp_path / "run"
    proc = fault("sigterm-at-step", 10, run, "--epochs", "1", "--scheduler", "cosine")
    proc = run_cli("train", "--resume", str(run), "--epochs", "3", "--log-every", "1")
    assert proc.returncode == 0, proc.stderr
    lrs = [r["train/lr"] for r in read_jsonl(run / "metrics.jsonl") if "train/lr" in r]
    assert all(b <= a for a, b in itertools.pairwise(lrs)), "the rate climbed back"
    resumed = [r["train/lr"] for r in read_jsonl(run / "metrics.jsonl") if r["step"] == 11]
    before = [r["train/lr"] for r in read_jsonl(run / "metrics.jsonl") if r["step"] == 10]
    assert resumed and before and resumed[0] > 0.95 * before[0], "the rate jumped"
    assert lrs[-1] < 1e-6, "the new schedule ends at the new end"


def test_onecycle_resumed_with_more_epochs_goes_on(tmp_path):
    run = tmp_path / "run"
    train(run, "--epochs", "1", "--scheduler", "onecycle")
    proc = run_cli("train", "--resume", str(run), "--epochs", "2")
    assert proc.returncode == 0, proc.stderr
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["n_iter"] == 2 * STEPS_PER_EPOCH


# ---------------------------------------------------------------- 3. lock
def test_a_second_run_on_a_locked_folder_names_the_holder(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "torchstyle", "train", *TINY, "--run-dir", str(run)]
    first = subprocess.Popen(
        [*args, "--epochs", "1000"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + HANG_TIMEOUT
        while not (run / ".lock").is_file() or b"pid" not in (run / ".lock").read_bytes():
            assert first.poll() is None and time.monotonic() < deadline, "first run never locked"
            time.sleep(0.2)
        second = train(run, "--epochs", "1", "--resume", "auto", ok=False)
        assert_one_line_error(second, f"in use by pid {first.pid} on ")
        # "In use" comes first, with nothing said as done before it: not "resumed", not
        # "already exists; pass --resume".
        for how in (("--resume", str(run)), ("--run-dir", str(run))):
            other = run_cli("train", *TINY, "--epochs", "1", *how)
            assert_one_line_error(other, f"in use by pid {first.pid} on ")
            assert "resumed" not in other.stdout + other.stderr
    finally:
        first.kill()  # SIGKILL: the kernel releases its lock
        first.wait()
    third = train(run, "--epochs", "1", "--resume", "auto")
    assert "done:" in third.stdout
    lines = [r["step"] for r in read_jsonl(run / "metrics.jsonl") if "train/loss" in r]
    assert lines == sorted(lines), "steps went backwards"


# ---------------------------------------------------------------- 4. --resume auto, SIGUSR1
def test_resume_auto_starts_continues_and_finishes(tmp_path):
    run = tmp_path / "run"
    killed = fault("sigkill-at-step", 3, run, "--epochs", "1", "--save-every-minutes", "0")
    assert killed.returncode == -signal.SIGKILL
    assert not (run / "checkpoints" / "latest.pt").exists()  # failed before its first save
    plain = run_cli("train", "--resume", str(run))
    assert_one_line_error(plain, "nothing to resume", "--resume auto")
    again = train(run, "--epochs", "1", "--resume", "auto")  # the same line starts it again
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["n_iter"] == STEPS_PER_EPOCH
    done = train(run, "--epochs", "1", "--resume", "auto")
    assert "finished: 1 of 1 epochs" in done.stdout and done.stdout != again.stdout


def test_sigusr1_saves_and_exits_with_the_resume_command(tmp_path):
    run = tmp_path / "run"
    proc = fault("sigusr1-at-step", 5, run, "--epochs", "1")
    assert proc.returncode == 128 + signal.SIGUSR1, proc.stderr
    assert f"torchstyle train --resume {run}" in proc.stderr
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["n_iter"] == 5


# ---------------------------------------------------------------- 5. checkpoints mid-epoch
def test_save_every_n_steps_bounds_what_a_kill_loses(tmp_path):
    run = tmp_path / "run"
    proc = fault("sigkill-at-step", 11, run, "--epochs", "1", "--save-every", "3")
    assert proc.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    # The save of step 9 waited for step 6's; it may still be in the background at step 11.
    assert ckpt["n_iter"] in (6, 9) and (ckpt["epoch"], ckpt["batch"]) == (0, ckpt["n_iter"])


def test_killed_at_ten_random_moments_the_run_ends_bitwise_equal(tmp_path):
    line = ("--epochs", "2", "--save-every", "3", "--resume", "auto")
    straight = tmp_path / "straight"
    train(straight, *line)
    run = tmp_path / "run"
    kinds = []
    for seed in range(10):  # even seeds kill after 1-4 steps, odd ones in a background write
        proc = fault("kill-random", seed, run, *line)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        kinds.append("background write" in proc.stderr)
        # a killed write leaves its temporary (.NAME.pt), which is no checkpoint
        saved = [p for p in (run / "checkpoints").glob("*.pt") if not p.name.startswith(".")]
        assert not saved or weights(run)  # loadable
    assert kinds.count(True) == 5, "half of the kills land during a background write"
    train(run, *line)
    assert_same_weights(straight, run)
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["n_iter"] == 2 * STEPS_PER_EPOCH


# ---------------------------------------------------------------- 6. folder deleted
def test_a_deleted_run_folder_is_recreated_with_its_config_and_stops(tmp_path):
    run = tmp_path / "run"
    proc = fault("rmtree-at-step", 5, run, "--epochs", "1", "--save-every", "2")
    assert proc.returncode == 3, proc.stderr
    assert "deleted or moved away" in proc.stderr and "Traceback" not in proc.stderr
    assert (run / "config.json").is_file() and (run / ".torchstyle-run").is_file()
    # Found when step 5 is logged, before anything is written into the vanished folder.
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["n_iter"] == 5
    resumed = run_cli("train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr


# ---------------------------------------------------------------- 10. --epochs 0
def test_epochs_zero_evaluates_the_untrained_model_and_says_so(tmp_path):
    proc = train(tmp_path / "run", "--epochs", "0")
    assert "nothing trained" in proc.stdout and "untrained model: test" in proc.stderr
    assert "epoch 1/0" not in proc.stderr


# ---------------------------------------------------------------- 11, 12. one-line errors
@pytest.mark.parametrize("case", ["file", "under-file", "too-long"])
def test_impossible_run_folders_get_one_line(tmp_path, case):
    (tmp_path / "f").write_text("a file")
    path = {
        "file": tmp_path / "f",
        "under-file": tmp_path / "f" / "run",
        "too-long": tmp_path / ("r" * 300),
    }[case]
    before = tree_digest(tmp_path)
    assert_one_line_error(train(path, "--epochs", "0", ok=False), "--run-dir")
    assert tree_digest(tmp_path) == before


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "three.png"
    Image.new("L", (8, 8), color=128).save(path)
    return path


@pytest.mark.parametrize("where", ["missing-folder", "a-folder"])
def test_predict_output_is_checked_before_computing(one_epoch, image, tmp_path, where):
    output = tmp_path / "nope" / "out.csv" if where == "missing-folder" else tmp_path
    before = tree_digest(tmp_path)
    proc = run_cli("predict", str(one_epoch), str(image), "--output", str(output))
    assert_one_line_error(proc, "--output")
    assert proc.stdout == "" and tree_digest(tmp_path) == before


@pytest.mark.parametrize(
    "content", [b"", b"just some text\n", bytes(range(256)) * 20], ids=["empty", "text", "garbage"]
)
def test_broken_checkpoint_files_are_called_corrupt(one_epoch, tmp_path, content):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    proc = run_cli("test", str(one_epoch), "--checkpoint", str(path))
    assert_one_line_error(proc, "truncated or corrupt")
    assert "can run code" not in proc.stderr


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("cfg.toml", b"\x00\xff\xfe binary", "is not text"),
        ("cfg.toml", b"batch-size = 8\n", "did you mean batch_size?"),
        ("cfg.yaml", b"epochs: 1\n", "write it as JSON (.json) or TOML (.toml)"),
        ("folder", None, "is a folder"),
    ],
)
def test_config_files_get_one_line(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.mkdir() if content is None else path.write_bytes(content)
    proc = run_cli("train", "--config", str(path), "--run-dir", str(tmp_path / "run"))
    assert_one_line_error(proc, fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (("--seed", "99999999999999999999"), "--seed must be an integer from 0"),
        (("--image-size", "100000"), "--image-size 100000"),
        (("--model", "classifier", "--model-arg", "width=100000"), "training needs about"),
    ],
)
def test_sizes_out_of_reach_are_refused_before_allocating(tmp_path, flags, fragment):
    proc = run_cli("train", "--epochs", "0", "--run-dir", str(tmp_path / "run"), *flags)
    assert_one_line_error(proc, fragment)
    assert not (tmp_path / "run").exists()


def test_help_says_each_default_once(cli):
    text = " ".join(cli("train", "--help").stdout.split())
    assert text.count("(default:") > 30
    assert not re.search(r"\(default: [^()]*\) \(default:", text), "a default said twice"


def test_printed_commands_are_shell_quoted(tmp_path):
    run = tmp_path / "ü ñ 日本" / "rün 1"
    proc = train(run, "--epochs", "0")
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("evaluate again:")]
    assert shlex.split(line.split(":", 1)[1]) == ["torchstyle", "test", str(run)]


# ---------------------------------------------------------------- fuzz: resume with changes
RESUME_FLAGS = {
    "--epochs": st.sampled_from(["0", "1", "2", "-1"]),
    "--lr": st.sampled_from(["1e-4", "0.001", "0", "abc"]),
    "--weight-decay": st.sampled_from(["0", "0.01", "-1"]),
    "--optimizer": st.sampled_from(["adamw", "sgd"]),
    "--scheduler": st.sampled_from(["none", "cosine"]),
    "--model-arg": st.sampled_from(["hidden=[16]", "hidden=[32]", "dropout=0.5", "nope=1"]),
    "--image-size": st.sampled_from(["8", "16"]),
    "--batch-size": st.sampled_from(["64", "32"]),
    "--seed": st.sampled_from(["1", "2"]),
    "--max-steps": st.sampled_from(["30", "10"]),
    "--log-every": st.sampled_from(["1", "50"]),
    "--save-every": st.sampled_from(["0", "7"]),
    "--augment": st.sampled_from(["none", "flip"]),
    "--data": st.sampled_from(["digits", "synthetic"]),
    "--run-dir": st.sampled_from(["SAME", "elsewhere"]),
    "--clip-grad": st.sampled_from(["1.0", "0"]),
}


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    flags=st.dictionaries(st.sampled_from(sorted(RESUME_FLAGS)), st.just(None), max_size=4).flatmap(
        lambda d: st.fixed_dictionaries({k: RESUME_FLAGS[k] for k in d})
    ),
    switches=st.lists(st.sampled_from(["--overwrite", "--channels-last"]), unique=True, max_size=1),
)
def test_resume_with_random_changes_runs_cleanly_or_refuses_untouched(one_epoch, flags, switches):
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(one_epoch, run)
        before = tree_digest(run)
        argv = ["train", "--resume", str(run), "--no-progress"]
        for flag, value in flags.items():
            argv += [flag, str(run) if value == "SAME" else value]
        argv += switches
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse: a value of the wrong type
                code = e.code
        assert code in (0, 2), (argv, code, err.getvalue())
        assert "Traceback" not in err.getvalue()
        if code == 2:
            assert "error:" in err.getvalue(), argv
            assert tree_digest(run) == before, f"a refused resume changed the run: {argv}"
            return
        load_checkpoint(run / "checkpoints" / "latest.pt")  # whole and loadable
        assert json.loads((run / "config.json").read_text())["resume"] == str(run)
        history = read_history(run)
        assert len(history) == 1 and history[0]["step"] == STEPS_PER_EPOCH
