"""The run folder's marker, guarded overwrite, OS lock and history (unit level, real files)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from torchstyle.engine import rundir
from torchstyle.errors import UserError


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` (folders as 'dir')."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def make_run(path: Path) -> Path:
    path.mkdir(parents=True)
    rundir.write_marker(path)
    (path / "config.json").write_text("{}")
    (path / "checkpoints").mkdir()
    (path / "checkpoints" / "latest.pt").write_bytes(b"x")
    (path / "events.out.tfevents.1.host").write_bytes(b"e")
    return path


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path):
    precious = tmp_path / "precious"
    (precious / "photos").mkdir(parents=True)
    (precious / "thesis.tex").write_text("years of work")
    before = tree_digest(precious)
    with pytest.raises(UserError, match="not a torchstyle run folder"):
        rundir.clear_run_folder(precious)
    assert tree_digest(precious) == before


def test_overwrite_refuses_a_run_folder_holding_user_files(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "notes.txt").write_text("mine")
    before = tree_digest(run)
    with pytest.raises(UserError, match=r"holds files a run does not write \(notes\.txt\)"):
        rundir.check_overwrite(run)
    assert tree_digest(run) == before


@pytest.mark.parametrize("which", ["cwd", "parent", "home", "root"])
def test_overwrite_refuses_protected_folders(tmp_path, monkeypatch, which):
    work = make_run(tmp_path / "a" / "work")  # a run marker does not make them replaceable
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "a"))
    target = {"cwd": Path("."), "parent": Path(".."), "home": tmp_path / "a", "root": Path("/")}
    with pytest.raises(UserError, match="--overwrite refuses"):
        rundir.check_overwrite(target[which])
    assert (work / "checkpoints" / "latest.pt").exists()


def test_overwrite_empties_a_run_folder_but_keeps_its_lock(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "samples").mkdir()
    with rundir.RunLock(run):
        rundir.clear_run_folder(run)
        assert [p.name for p in run.iterdir()] == [rundir.LOCK]


@pytest.mark.parametrize("case", ["file", "under-file", "too-long", "read-only"])
def test_impossible_run_folders_are_refused(tmp_path, case):
    (tmp_path / "f").write_text("a file")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    path = {
        "file": tmp_path / "f",
        "under-file": tmp_path / "f" / "run",
        "too-long": tmp_path / ("x" * 300),
        "read-only": ro / "run",
    }[case]
    if case == "read-only" and os.access(ro, os.W_OK):
        pytest.skip("running as root: permissions are not enforced")
    message = {
        "file": "is a file",
        "under-file": "which is a file",
        "too-long": "longer than the file system allows",
        "read-only": "not writable",
    }[case]
    with pytest.raises(UserError, match=message):
        rundir.check_run_dir_path(path)
    ro.chmod(0o700)


HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from torchstyle.engine.rundir import RunLock
    RunLock(Path(sys.argv[1])).acquire()
    print("held", flush=True)
    time.sleep(3600)  # until the test kills it
    """
)


def test_lock_names_the_holder_and_dies_with_it_even_on_sigkill(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(rundir.RunLockedError, match=rf"in use by pid {holder.pid} on "):
            rundir.RunLock(run).acquire()
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs
        holder.wait()
    lock = rundir.RunLock(run)
    lock.acquire()  # the kernel released the dead holder's lock
    assert lock.held
    lock.release()


def test_lost_folder_is_detected(tmp_path):
    run = tmp_path / "run"
    lock = rundir.RunLock(run)
    lock.acquire()
    rundir.write_marker(run)
    assert not lock.folder_lost()
    run.rename(tmp_path / "moved")
    assert lock.folder_lost()
    lock.release()


def test_history_appends_one_line_per_resume(tmp_path):
    rundir.append_history(tmp_path, {"step": 4, "changed": {"lr": [0.1, 0.01]}})
    rundir.append_history(tmp_path, {"step": 8, "changed": {}})
    rows = rundir.read_history(tmp_path)
    assert [r["step"] for r in rows] == [4, 8] and rows[0]["changed"] == {"lr": [0.1, 0.01]}
