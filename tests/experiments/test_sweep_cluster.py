"""Sweeps past one machine: workers sharing a study in a real PostgreSQL server, take-over of
lost trials, a refused second config, journal storage, torchrun trials, and signals.

The PostgreSQL server is started by the tests from the machine's server binaries
(``tests/experiments/postgres.py``); without them the tests that need it skip with the reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import HANG_TIMEOUT, REPO, run_cli
from tests.experiments import postgres

TINY = """
seed = 0
metric = "accuracy"

[fixed]
model = "mlp"
data = "digits"
epochs = {epochs}
log_every = 5
model_args = {{hidden = [8]}}
{extra}

[pruner]
type = "none"

[space]
lr = {{type = "float", low = 1e-3, high = 0.05, log = true}}
"""
needs_postgres = pytest.mark.skipif(postgres.missing() is not None, reason=str(postgres.missing()))


def _config(path: Path, epochs: int = 1, extra: str = "max_steps = 2") -> Path:
    path.write_text(TINY.format(epochs=epochs, extra=extra))
    return path


@pytest.fixture(scope="module")
def pg():
    """One server for the module; each test uses its own study."""
    if postgres.missing():
        pytest.skip(postgres.missing())
    with postgres.server() as server:
        yield server


def _env(pg=None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    if pg is not None:
        env["TORCHSTYLE_STORAGE_PASSWORD"] = pg.password
    return env


def _worker(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "torchstyle", "sweep", *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _study(pg, name: str):
    import optuna

    from torchstyle.experiments.study import open_storage, resolve_url

    os.environ["TORCHSTYLE_STORAGE_PASSWORD"] = pg.password
    try:
        store = open_storage(resolve_url(pg.url))
    finally:
        del os.environ["TORCHSTYLE_STORAGE_PASSWORD"]
    return optuna.load_study(study_name=name, storage=store)


def _files_text(root: Path) -> str:
    out = []
    for path in root.rglob("*"):
        if path.is_file() and path.suffix not in (".pt", ".db"):
            out.append(path.read_bytes().decode(errors="replace"))
    return "\n".join(out)


@needs_postgres
@pytest.mark.slow
def test_three_workers_end_exactly_nine_trials_none_twice(tmp_path, pg):
    from torchstyle.experiments.study import superseded

    _config(tmp_path / "three.toml")
    common = ("--config", "three.toml", "--storage", pg.url, "--trials", "9")
    env = _env(pg)
    procs = [_worker(tmp_path, *common, "--dir", f"w{i}", env=env) for i in range(3)]
    # The password is given in the environment: no worker's or trial's command line holds it.
    for p in procs:
        assert pg.password not in Path(f"/proc/{p.pid}/cmdline").read_text()
    results = [p.communicate(timeout=HANG_TIMEOUT) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err

    counted = [t for t in _study(pg, "three").trials if not superseded(t)]
    assert len(counted) == 9 and all(t.state.name == "COMPLETE" for t in counted)
    # Every trial ran once, in exactly one worker's root, which the study records.
    folders = sorted(tmp_path.glob("w*/trials/trial-*"))
    assert sorted(f.name for f in folders) == [f"trial-{t.number:04d}" for t in counted]
    for t in counted:
        folder = Path(t.user_attrs["run_dir"])
        assert folder.parent.parent.name.startswith("w") and t.user_attrs["host"]
        assert json.loads((folder / "status.json").read_text())["state"] == "finished"
        log = folder.parent.parent / "logs" / f"{folder.name}.log"
        assert log.read_text().count("\n$ ") + log.read_text().startswith("$ ") == 1
    assert pg.password not in _files_text(tmp_path) + "".join(o + e for o, e in results)

    # The whole study's table from anywhere, with the storage URL alone.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    status = run_cli("sweep", "--storage", pg.url, "--status", cwd=elsewhere, env=env)
    assert status.returncode == 0, status.stderr
    rows = [line.split() for line in status.stdout.splitlines()[1:10]]
    assert [int(r[0]) for r in rows] == [t.number for t in counted]
    assert all(r[1] == "complete" for r in rows) and "trials: 9 complete" in status.stdout


def _wait_for(predicate, proc: subprocess.Popen, what: str, limit: float = HANG_TIMEOUT) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _running_past_epoch(root: Path) -> Path | None:
    for path in root.glob("trials/*/status.json"):
        try:
            status = json.loads(path.read_text())
        except ValueError:
            continue
        if status["state"] == "running" and status["epoch"] >= 1:
            return path.parent
    return None


@needs_postgres
@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_taken_over_and_ends_once(tmp_path, pg):
    from torchstyle.experiments.study import superseded

    _config(tmp_path / "kill.toml", epochs=3, extra="")
    common = ("--config", "kill.toml", "--storage", pg.url, "--trials", "2")
    common += ("--heartbeat", "0.5", "--grace-period", "5")
    env = _env(pg)
    first = _worker(tmp_path, *common, "--dir", "a", env=env)
    second = _worker(tmp_path, *common, "--dir", "b", env=env)
    _wait_for(lambda: _running_past_epoch(tmp_path / "a"), first, "no trial got past epoch 1")
    first.send_signal(signal.SIGKILL)
    folder = _running_past_epoch(tmp_path / "a") or next((tmp_path / "a" / "trials").iterdir())
    first.communicate()
    out, err = second.communicate(timeout=HANG_TIMEOUT)
    assert second.returncode == 0, err

    trials = [t for t in _study(pg, "kill").trials if not superseded(t)]
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials), trials
    number = int(folder.name.split("-")[1])
    assert f"trial {number}: taken over from" in err
    assert f"resumed after a stop: trial(s) {number}" in out
    # Resumed from its checkpoint in the dead worker's folder, by the live worker, once.
    log = (tmp_path / "b" / "logs" / folder.name).with_suffix(".log").read_text()
    assert f"--resume {folder}" in log and log.count("$ ") == 1
    assert json.loads((folder / "status.json").read_text())["state"] == "finished"
    assert not (tmp_path / "b" / "trials" / folder.name).exists()


@needs_postgres
def test_a_second_config_is_refused_with_the_difference(tmp_path, pg):
    from torchstyle.experiments.search import parse_spec
    from torchstyle.experiments.sweep import Sweep
    from torchstyle.experiments.workers import Workers

    first = parse_spec({"space": {"lr": {"type": "float", "low": 0.1, "high": 1.0}}}, "a.toml")
    url = pg.url.replace("sweeper@", f"sweeper:{pg.password}@")
    workers = Workers(storage=url, study="shared")
    Sweep(spec=first, sweep_dir=tmp_path / "a", trials=1, jobs=1, workers=workers)._open_study()
    other = tmp_path / "other.toml"
    other.write_text('[space]\nlr = {type = "float", low = 0.2, high = 1.0}\n')
    proc = run_cli(
        "sweep", "--config", str(other), "--storage", pg.url, "--study", "shared",
        "--dir", str(tmp_path / "b"), env=_env(pg),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "holds a sweep with another search (space.lr.low is 0.1 there, 0.2 here)" in proc.stderr
    assert pg.password not in proc.stderr
    assert not (tmp_path / "b" / "trials").exists()


@needs_postgres
def test_lost_trials_are_taken_over_retried_or_failed(tmp_path, pg):
    """A silent worker on another host: taken over once its heartbeat is past the grace period;
    its folder out of reach, the trial is failed as lost and asked again with the same
    parameters; past --max-retries, failed with the reason."""
    from torchstyle.experiments import study as st
    from torchstyle.experiments.search import parse_spec
    from torchstyle.experiments.sweep import Sweep
    from torchstyle.experiments.workers import Workers

    spec = parse_spec({"space": {"lr": {"type": "float", "low": 0.1, "high": 1.0}}}, "a.toml")
    url = pg.url.replace("sweeper@", f"sweeper:{pg.password}@")
    workers = Workers(storage=url, study="lost", grace=30, max_retries=1)
    sweep = Sweep(spec=spec, sweep_dir=tmp_path / "here", trials=3, jobs=1, workers=workers)
    sweep._open_study()
    store = sweep.study._storage
    gone = tmp_path / "gone" / "trials" / "trial-0000"
    job = sweep._next_job()
    assert job is not None and job.number == 0
    sweep._release_all()
    trial = sweep.study.trials[0]
    attrs = {st.WORKER: "otherhost:1:1", st.RUN_DIR: str(gone), st.RELEASED: False}
    for key, value in {**attrs, st.HEARTBEAT: time.time()}.items():
        store.set_trial_system_attr(trial._trial_id, key, value)
    assert sweep._take_over(sweep.study.trials[0]) is None  # alive: a fresh heartbeat
    store.set_trial_system_attr(trial._trial_id, st.HEARTBEAT, time.time() - 60)
    assert sweep._take_over(sweep.study.trials[0]) is None  # out of reach: asked again
    lost, again = sweep.study.trials
    assert (
        lost.state.name == "FAIL"
        and st.superseded(lost)
        and "not reachable" in lost.system_attrs[st.REASON]
    )
    assert again.state.name == "WAITING" and again.user_attrs["retry_of"] == 0
    job = sweep._next_job()  # the retry, from the start, in this worker's root
    assert job is not None and job.number == 1 and "--run-dir" in job.args
    assert sweep.study.trials[1].params == lost.params
    assert st.counts(sweep.study.trials) == (0, 1)
    sweep._release_all()
    # Its worker lost again: past --max-retries 1 it fails, with the reason, and counts.
    store.set_trial_system_attr(again._trial_id, st.RETRIES, 1)
    store.set_trial_system_attr(again._trial_id, st.HEARTBEAT, time.time() - 60)
    store.set_trial_system_attr(again._trial_id, st.WORKER, "otherhost:1:1")
    store.set_trial_system_attr(again._trial_id, st.RELEASED, False)
    sweep._take_over(sweep.study.trials[1])
    failed = sweep.study.trials[1]
    assert failed.state.name == "FAIL" and "lost 2 times" in failed.system_attrs[st.REASON]
    assert st.counts(sweep.study.trials) == (1, 0)


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_signals_at_start_up_and_mid_training_are_never_failures(tmp_path, storage):
    """Ctrl-C while the trial starts up (before any checkpoint), then SIGTERM mid-training:
    each time the trial stays open, and the next run of the same command ends it, once."""
    import optuna

    _config(tmp_path / "sig.toml", epochs=3, extra="")
    args = ["--config", "sig.toml", "--dir", "sw", "--trials", "1"]
    if storage == "journal":
        args += ["--storage", "journal:sw.journal"]
    env = _env()
    log = tmp_path / "sw" / "logs" / "trial-0000.log"
    sweep = _worker(tmp_path, *args, env=env)
    # The trial process exists and is still importing: no checkpoint, no signal handler yet.
    _wait_for(lambda: _children(sweep.pid), sweep, "the trial never started")
    sweep.send_signal(signal.SIGINT)
    _, err = sweep.communicate(timeout=HANG_TIMEOUT)
    assert sweep.returncode == 130 and "fail" not in err, err

    sweep = _worker(tmp_path, *args, env=env)
    _wait_for(lambda: _running_past_epoch(tmp_path / "sw"), sweep, "no epoch ended")
    sweep.send_signal(signal.SIGTERM)
    _, err = sweep.communicate(timeout=HANG_TIMEOUT)
    assert sweep.returncode == 130 and "fail" not in err, err

    proc = run_cli("sweep", *args, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    url = f"sqlite:///{tmp_path / 'sw' / 'study.db'}"
    if storage == "journal":
        from torchstyle.experiments.study import open_storage

        url = open_storage(f"journal:{tmp_path / 'sw.journal'}")
    trials = optuna.load_study(study_name="sig", storage=url).trials
    assert [t.state.name for t in trials] == ["COMPLETE"]
    assert "resumed after a stop: trial(s) 0" in proc.stdout
    starts = [line for line in log.read_text().splitlines() if line.startswith("$ ")]
    assert len(starts) == 3 and "--overwrite" in starts[1] and "--resume" in starts[2], starts


def _children(pid: int) -> list[str]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += task.read_text().split()
    return found


def test_a_trial_the_sweep_signalled_has_not_ended(tmp_path):
    from torchstyle.experiments.search import parse_spec
    from torchstyle.experiments.sweep import Sweep

    spec = parse_spec({"space": {"lr": {"type": "float", "low": 0.1, "high": 1.0}}}, "a.toml")
    sweep = Sweep(spec=spec, sweep_dir=tmp_path, trials=1, jobs=1)
    folder = tmp_path / "trials" / "trial-0000"
    folder.mkdir(parents=True)
    # Killed by the forwarded SIGTERM before the engine had a handler: no status at all.
    assert sweep._outcome(folder, rc=-signal.SIGTERM, signalled=True) is None
    (folder / "status.json").write_text(json.dumps({"state": "failed", "error": "x"}))
    assert sweep._outcome(folder, rc=1, signalled=True) is None
    # The same ends on its own: a failure, counted.
    assert sweep._outcome(folder, rc=1)[0] == "FAIL"


def test_launcher_templates(tmp_path):
    from torchstyle.errors import UserError
    from torchstyle.experiments.workers import Workers, launcher_command

    assert launcher_command(Workers(), ["--lr", "0.1"])[-4:] == [
        "torchstyle",
        "train",
        "--lr",
        "0.1",
    ]
    cmd = launcher_command(Workers(nproc=2), ["--lr", "0.1"])
    assert cmd[cmd.index("-m", 3) + 1] == "torch.distributed.run" and "2" in cmd
    srun = launcher_command(Workers(nproc=4, launcher="srun -n {nproc} {cmd}"), ["--lr", "0.1"])
    assert srun[3:6] == ["srun", "-n", "4"] and srun[-2:] == ["--lr", "0.1"]
    with pytest.raises(UserError, match="unknown placeholder"):
        launcher_command(Workers(launcher="srun {nodes} {cmd}"), [])
    with pytest.raises(UserError, match=r"put \{args\} or \{cmd\}"):
        launcher_command(Workers(launcher="srun"), [])


@pytest.mark.slow
def test_a_trial_of_two_processes_reports_from_rank_zero(tmp_path):
    import optuna

    _config(tmp_path / "ddp.toml", epochs=2, extra="")
    args = ("sweep", "--config", "ddp.toml", "--dir", "sw", "--trials", "1")
    proc = run_cli(*args, "--nproc-per-trial", "2", cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    log = (tmp_path / "sw/logs/trial-0000.log").read_text()
    assert proc.returncode == 0, proc.stderr + log
    storage = f"sqlite:///{tmp_path / 'sw/study.db'}"
    (trial,) = optuna.load_study(study_name="ddp", storage=storage).trials
    assert trial.state.name == "COMPLETE"
    assert sorted(trial.intermediate_values) == [1, 2]  # once per epoch, by rank 0
    first = log.splitlines()[0]
    assert "torch.distributed.run" in first and "--nproc-per-node 2" in first
    status = json.loads((tmp_path / "sw/trials/trial-0000/status.json").read_text())
    assert status["state"] == "finished"


def test_storage_urls_passwords_and_masking(tmp_path, monkeypatch):
    from torchstyle.errors import UserError
    from torchstyle.experiments.study import ENV_PASSWORD, ENV_PASSWORD_FILE, mask, resolve_url

    monkeypatch.delenv(ENV_PASSWORD, raising=False)
    secret = tmp_path / "pw"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv(ENV_PASSWORD_FILE, str(secret))
    url = resolve_url("postgresql://me@db:5432/sweeps")
    assert url == "postgresql://me:from-a-file@db:5432/sweeps"
    assert mask(url) == "postgresql://me:***@db:5432/sweeps"
    monkeypatch.setenv(ENV_PASSWORD, "from-env")
    assert resolve_url("postgresql://me@db/sweeps") == "postgresql://me:from-env@db/sweeps"
    # A password already in the URL wins; SQLite paths and journal files become absolute.
    assert resolve_url("mysql://me:given@db/s") == "mysql://me:given@db/s"
    monkeypatch.chdir(tmp_path)
    assert resolve_url("sqlite:///s.db") == f"sqlite:///{tmp_path / 's.db'}"
    assert resolve_url("journal:j/s.log") == f"journal:{tmp_path / 'j' / 's.log'}"
    with pytest.raises(UserError, match="give a database URL"):
        resolve_url("redis://me:pw@host/0")
    monkeypatch.delenv(ENV_PASSWORD)
    monkeypatch.setenv(ENV_PASSWORD_FILE, str(tmp_path / "missing"))
    with pytest.raises(UserError, match="cannot read it"):
        resolve_url("postgresql://me@db/sweeps")


def test_the_first_difference_between_two_searches():
    from torchstyle.experiments.study import first_difference

    saved = {"space": {"lr": {"low": 0.1, "high": 1.0}}, "metric": "accuracy"}
    assert first_difference(saved, saved) is None
    changed = {"space": {"lr": {"low": 0.2, "high": 1.0}}, "metric": "accuracy"}
    assert first_difference(saved, changed) == "space.lr.low is 0.1 there, 0.2 here"
    assert first_difference(saved, {**saved, "seed": 1}) == "seed is new here"
