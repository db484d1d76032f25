"""``torchstyle sweep``: a real 6-trial sweep on digits, SIGKILLed mid-trial and continued."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import HANG_TIMEOUT, REPO, run_cli

SWEEP = """
trials = 6
jobs = 2
seed = 0
metric = "accuracy"

[fixed]
model = "mlp"
data = "digits"
epochs = 2
log_every = 5
model_args = {hidden = [8]}

[pruner]
type = "median"
startup_trials = 2

[space]
lr = {type = "float", low = 1e-3, high = 0.05, log = true}
batch_size = {type = "categorical", choices = [32, 64]}
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by its parent) counts as dead.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def _statuses(sweep_dir: Path) -> list[dict]:
    out = []
    for path in sweep_dir.glob("trials/*/status.json"):
        try:
            out.append(json.loads(path.read_text()))
        except ValueError:  # replaced while read: rename is atomic, so only a stale handle
            continue
    return out


@pytest.mark.slow
def test_sweep_killed_mid_trial_continues_to_exactly_six_trials(tmp_path):
    import optuna

    (tmp_path / "sweep.toml").write_text(SWEEP)
    args = ("sweep", "--config", "sweep.toml", "--dir", "sw")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sweep = subprocess.Popen(
        [sys.executable, "-m", "torchstyle", *args], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    sweep_dir = tmp_path / "sw"
    deadline = time.monotonic() + HANG_TIMEOUT
    # Kill once a trial is mid-way: past its first epoch's checkpoint, still training.
    while not any(s["state"] == "running" and s["epoch"] >= 1 for s in _statuses(sweep_dir)):
        assert sweep.poll() is None, sweep.communicate()[1]
        assert time.monotonic() < deadline, "no trial got past its first epoch"
        time.sleep(0.05)
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    # Its trials die with it: none goes on writing to the study.
    pids = [s["pid"] for s in _statuses(sweep_dir) if s["state"] == "running"]
    assert pids
    deadline = time.monotonic() + HANG_TIMEOUT
    while any(_alive(p) for p in pids):
        assert time.monotonic() < deadline, "a trial outlived its killed sweep"
        time.sleep(0.1)

    proc = run_cli(*args, cwd=tmp_path, timeout=HANG_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert "resumed after a stop: trial(s)" in proc.stdout

    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{sweep_dir / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert len(states) == 6 and set(states) <= {"COMPLETE", "PRUNED"}, states
    best = study.best_trial
    assert f"best: trial {best.number}, accuracy {best.value:.4f}" in proc.stdout
    line = next(x for x in proc.stdout.splitlines() if x.startswith("best command:"))
    assert line.split(":", 1)[1].split()[:2] == ["torchstyle", "train"]
    assert (
        f"--lr {best.params['lr']}" in line and f"--batch-size {best.params['batch_size']}" in line
    )
    # Every trial is an ordinary, finished run folder that `runs` lists.
    listing = run_cli("runs", "sw", "--format", "json", cwd=tmp_path)
    rows = json.loads(listing.stdout)
    assert len(rows) == 6 and all(r["state"] == "finished" for r in rows)
    best_row = next(r for r in rows if r["name"] == f"trial-{best.number:04d}")
    assert best_row["best"] == pytest.approx(best.value)

    # The same command on a finished sweep runs nothing more.
    again = run_cli(*args, cwd=tmp_path)
    assert (
        again.returncode == 0
        and len(optuna.load_study(study_name="sweep", storage=study._storage).trials) == 6
    )


def test_sweep_config_mistakes_are_one_line_errors(tmp_path):
    from torchstyle.config import load_config_file
    from torchstyle.errors import UserError
    from torchstyle.experiments.search import parse_spec

    cases = {
        'space = {rate = {type = "float", low = 0.1, high = 1.0}}': "'rate' is not a train flag",
        'space = {lr = {type = "float", low = 1.0, high = 0.1}}': "needs numbers low < high",
        'space = {lr = {type = "float", low = 0.0, high = 0.1, log = true}}': "needs low > 0",
        'space = {run_dir = {type = "categorical", choices = ["a"]}}': "set by the sweep itself",
        'space = {lr = {type = "uniform", low = 0.1, high = 1.0}}': 'type = "int", "float" or "categorical"',
        'tirals = 3\nspace = {lr = {type = "float", low = 0.1, high = 1.0}}': "unknown key(s) tirals",
        '[fixed]\nlr = 0.1\n[space]\nlr = {type = "float", low = 0.1, high = 1.0}': "both fixed and searched",
    }  # fmt: skip
    for i, (text, message) in enumerate(cases.items()):
        config = tmp_path / f"s{i}.toml"
        config.write_text(text + "\n")
        with pytest.raises(UserError, match=re.escape(message)):
            parse_spec(load_config_file(str(config)), config.name)
    # Through the CLI: one line, exit code 2, and no sweep folder left behind.
    config = tmp_path / "s.toml"
    config.write_text(next(iter(cases)) + "\n")
    proc = run_cli("sweep", "--config", str(config), "--dir", str(tmp_path / "d"))
    assert proc.returncode == 2 and "'rate' is not a train flag" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "d").exists()


def test_a_sweep_folder_refuses_another_search(tmp_path):
    from torchstyle.errors import UserError
    from torchstyle.experiments.search import parse_spec
    from torchstyle.experiments.sweep import Sweep

    first = parse_spec({"space": {"lr": {"type": "float", "low": 0.1, "high": 1.0}}}, "a.toml")
    Sweep(spec=first, sweep_dir=tmp_path / "sw", trials=1, jobs=1)._open_study()
    other = parse_spec({"space": {"lr": {"type": "float", "low": 0.2, "high": 1.0}}}, "b.toml")
    with pytest.raises(UserError, match="holds a sweep with another search"):
        Sweep(spec=other, sweep_dir=tmp_path / "sw", trials=1, jobs=1)._open_study()


def test_train_flags_of_a_trial():
    from torchstyle.experiments.search import to_flags

    flags = to_flags(
        {
            "lr": 0.01,
            "amp": "bf16",
            "compile": False,
            "model_args.hidden": [8, 4],
            "clip_grad": None,
        }
    )
    assert flags == [
        "--lr",
        "0.01",
        "--amp",
        "bf16",
        "--no-compile",
        "--model-arg",
        "hidden=[8, 4]",
    ]
