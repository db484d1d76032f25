"""Write faults seen from the command line: a training run whose checkpoint write fails (an
injected fault, then a real full disk) and a sweep whose storage cannot be written."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from tests.faults import ENV, leftovers
from torchstyle.engine.checkpoint import load_checkpoint

TRAIN = ("train", "--model", "mlp", "--data", "digits", "--epochs", "2", "--batch-size", "256",
         "--no-progress", "--resume", "auto")  # fmt: skip
FAULT_SITE = str(Path(__file__).resolve().parent / "faultsite")


def _train(run: Path, fault: str | None = None):
    env = {"PYTHONPATH": f"{FAULT_SITE}{os.pathsep}{REPO}", ENV: fault or ""}
    return run_cli(*TRAIN, "--run-dir", str(run), env=env)


def _check_failed_run(run: Path, proc: subprocess.CompletedProcess, cause: str) -> None:
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert errors[0] == proc.stderr.strip().splitlines()[-1], proc.stderr  # the last word
    assert f"could not write {run / 'checkpoints'}" in errors[0] and cause in errors[0], errors
    assert "free disk space" in errors[0] and "checkpoint is intact" in errors[0], errors
    assert leftovers(run) == [], "a temporary file was left behind"
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and cause in status["error"], status
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["epoch"] == 1


@pytest.mark.slow
def test_a_failed_checkpoint_write_stops_in_one_line_and_the_same_command_resumes(tmp_path):
    run = tmp_path / "run"
    # The first latest.pt (epoch 1) is written; the second fails as a full disk does.
    proc = _train(run, "ENOSPC:.latest.tmp-*:1")
    _check_failed_run(run, proc, "No space left on device")
    again = _train(run)  # the fault is gone
    assert again.returncode == 0, again.stderr
    assert "resum" in again.stdout + again.stderr
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["epoch"] == 2
    assert json.loads((run / "status.json").read_text())["state"] == "finished"


def _mount_tmpfs(folder: Path, size: str) -> str | None:
    """Mounts a tmpfs of ``size`` at ``folder``; the reason it cannot, or None."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return "a small file system needs root and mount(8)"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)  # fmt: skip
    return None if done.returncode == 0 else f"cannot mount a tmpfs: {done.stderr.strip()}"


@pytest.mark.slow
def test_a_real_full_disk_fails_in_one_line_and_resumes_once_space_is_freed(tmp_path):
    disk = tmp_path / "disk"
    reason = _mount_tmpfs(disk, "8m")
    if reason:
        pytest.skip(reason)
    try:
        run = disk / "run"
        first = run_cli(*TRAIN[:-2], "--epochs", "1", "--run-dir", str(run))
        assert first.returncode == 0, first.stderr
        size = (run / "checkpoints" / "latest.pt").stat().st_size
        # Leave room for the small files but not for a second checkpoint beside the first.
        free = shutil.disk_usage(disk).free
        filler = disk / "filler"
        with open(filler, "wb") as f:
            f.truncate(0)
            f.write(b"\0" * max(0, free - size // 2))
        proc = run_cli(*TRAIN, "--run-dir", str(run))
        _check_failed_run(run, proc, "No space left on device")
        filler.unlink()
        again = run_cli(*TRAIN, "--run-dir", str(run))
        assert again.returncode == 0, again.stderr
        assert load_checkpoint(run / "checkpoints" / "latest.pt")["epoch"] == 2
    finally:
        subprocess.run(["umount", str(disk)], check=False)


SWEEP = """
trials = 1
metric = "accuracy"
[fixed]
model = "mlp"
data = "digits"
epochs = 1
[space]
lr = {type = "float", low = 1e-3, high = 0.05, log = true}
"""


@pytest.fixture
def root_handlers():
    """Drops the logging handlers an in-process command adds (they hold a captured stream)."""
    import logging

    before = list(logging.root.handlers)
    yield
    logging.root.handlers[:] = before


def test_sweep_storage_fault_is_one_line(tmp_path, monkeypatch, capsys, root_handlers):
    import sqlalchemy.exc

    from torchstyle.cli import main
    from torchstyle.experiments import sweep

    monkeypatch.chdir(tmp_path)
    Path("sweep.toml").write_text(SWEEP)

    def full(url: str):
        cause = sqlite3.OperationalError("database or disk is full")
        raise sqlalchemy.exc.OperationalError("INSERT INTO studies", {}, cause)

    monkeypatch.setattr(sweep, "open_storage", full)
    assert main(["sweep", "--config", "sweep.toml", "--dir", "sw"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not write sw: No space left on device" in err[0], err

    real_write_text = Path.write_text

    def read_only(self: Path, *args, **kwargs):
        if self.parent.name == "sw":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_write_text(self, *args, **kwargs)

    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    shutil.rmtree("sw")
    monkeypatch.setattr(Path, "write_text", read_only)
    assert main(["sweep", "--config", "sweep.toml", "--dir", "sw"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Read-only file system; write to a writable folder" in err[0], err
