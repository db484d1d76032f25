"""Background checkpoint writes, the save schedule, and loads of broken files (unit level)."""

from __future__ import annotations

import errno
import os
import threading

import pytest
import torch

import torchstyle.engine.checkpoint as checkpoint
from torchstyle.engine.checkpoint import (
    CheckpointLoadError,
    CheckpointManager,
    CheckpointWriteError,
    SaveSchedule,
    load_checkpoint,
)


def test_background_save_writes_the_state_as_it_was_when_saved(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    weights = torch.arange(6.0)
    state = {"net": {"w": weights}, "epoch": 1, "metrics": {"acc": 0.5}}
    manager.save(state, epoch_end=1, is_best=True, background=True)
    weights.add_(100.0)  # the loop goes on changing the weights in place
    state["metrics"]["acc"] = 0.9
    manager.wait()
    saved = load_checkpoint(manager.latest)
    assert torch.equal(saved["net"]["w"], torch.arange(6.0)) and saved["metrics"]["acc"] == 0.5
    assert load_checkpoint(manager.best)["epoch"] == 1
    assert (tmp_path / "epoch_0001.pt").exists()


def test_the_next_save_waits_for_the_previous_one(tmp_path, monkeypatch):
    release = threading.Event()
    real_save = checkpoint.atomic_save
    order = []

    def slow_save(obj, path):
        if obj["epoch"] == 1:
            release.wait(10)
        real_save(obj, path)
        order.append(obj["epoch"])

    monkeypatch.setattr(checkpoint, "atomic_save", slow_save)
    manager = CheckpointManager(tmp_path, keep=0)
    manager.save({"epoch": 1}, epoch_end=None, is_best=False, background=True)
    threading.Timer(0.2, release.set).start()
    manager.save({"epoch": 2}, epoch_end=None, is_best=False, background=True)
    manager.wait()
    assert order == [1, 2] and load_checkpoint(manager.latest)["epoch"] == 2


def test_a_failed_background_write_is_raised_at_the_next_save(tmp_path, monkeypatch):
    manager = CheckpointManager(tmp_path, keep=0)
    manager.save({"epoch": 1}, epoch_end=None, is_best=False)

    def disk_full(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    manager.save({"epoch": 2}, epoch_end=None, is_best=False, background=True)
    with pytest.raises(CheckpointWriteError, match=r"No space left.*previous checkpoint is intact"):
        manager.save({"epoch": 3}, epoch_end=None, is_best=False, background=True)
    monkeypatch.undo()
    assert load_checkpoint(manager.latest)["epoch"] == 1
    assert not list(tmp_path.glob(".*tmp*"))


def test_save_schedule_by_steps_and_by_minutes():
    now = [0.0]
    schedule = SaveSchedule(every_steps=3, every_minutes=10, clock=lambda: now[0])
    assert [s for s in range(1, 10) if schedule.due_by_steps(s)] == [3, 6, 9]
    now[0] = 599.0
    assert not schedule.due_by_time()
    now[0] = 600.0
    assert schedule.due_by_time()
    schedule.saved()
    assert not schedule.due_by_time()
    off = SaveSchedule(every_steps=None, every_minutes=None)
    assert not off.due_by_steps(5) and not off.due_by_time()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"truncated or corrupt \(an empty file\)"),
        (b"hello, I am a text file\n", r"truncated or corrupt \(not a torch\.save archive"),
        (os.urandom(4096), r"truncated or corrupt"),
    ],
    ids=["empty", "text", "garbage"],
)
def test_broken_files_are_called_corrupt_not_unsafe(tmp_path, content, message):
    path = tmp_path / "latest.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointLoadError, match=message) as info:
        load_checkpoint(path)
    assert "can run code" not in str(info.value)


def test_garbage_inside_a_zip_archive_is_corrupt(tmp_path):
    import zipfile

    path = tmp_path / "latest.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", os.urandom(512))
    with pytest.raises(CheckpointLoadError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_a_folder_as_checkpoint_is_named_as_such(tmp_path):
    with pytest.raises(CheckpointLoadError, match="is a folder, not a checkpoint file"):
        load_checkpoint(tmp_path)
