"""``torchstyle sweep --config sweep.toml``: a hyperparameter search on Optuna, by one or many workers.

Every trial is an ordinary ``torchstyle train`` subprocess (or a torchrun job) writing an
ordinary run folder in ``ROOT/trials/``, so ``runs``, ``test`` and ``--resume`` work on trials.
The study lives in ``SWEEP/study.db`` (SQLite) or any storage ``--storage`` names
(:mod:`torchstyle.experiments.study`); the search it was created with is stored in it. The
trial itself reports its per-epoch validation metric to the study and asks the pruner
(:mod:`torchstyle.experiments.trial`); a worker asks Optuna for parameters, starts trials
(``--jobs`` at a time), keeps their heartbeats and tells the study how each ended.

The same command started N times (here or on other machines) makes N workers that together
end exactly ``--trials`` trials: a trial's number is its place in that budget, and one asked
beyond it is dropped. A worker killed at any moment leaves its trials ``RUNNING``; a live
worker (or the next run of the same command) takes each over once its worker is known dead
or silent past the grace period, and **resumes** it from its run folder's latest checkpoint
(or starts it again there if it had none) with the same parameters and number; a trial whose
folder it cannot reach is failed as lost and asked again, from the start, by the number after.
The search itself is checked and turned into flags in :mod:`torchstyle.experiments.search`; how
a trial is launched is in :mod:`torchstyle.experiments.workers`.
``--trials N`` counts ended trials: complete, pruned, or failed by their own error (a diverging
learning rate is a result too); a trial the sweep stopped by a signal never counts as failed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from torchstyle.errors import UserError
from torchstyle.experiments.search import SweepSpec, decode_params, distribution, to_flags
from torchstyle.experiments.status import describe, load_status
from torchstyle.experiments.study import (
    HEARTBEAT,
    LOST,
    REASON,
    RELEASED,
    RETRIES,
    RETRY_OF_USER,
    RUN_DIR,
    SEARCH_ATTR,
    SURPLUS,
    WORKER,
    counts,
    first_difference,
    mask,
    open_storage,
    rank,
    stale,
    superseded,
    worker_id,
)
from torchstyle.experiments.trial import (
    ENV_DIR,
    ENV_PARENT,
    ENV_STORAGE,
    ENV_TRIAL,
    SPEC_FILE,
    TRIAL_FILE,
    require_optuna,
    study_url,
)
from torchstyle.experiments.workers import STUDY_NAME, Workers, launcher_command

log = logging.getLogger(__name__)


@dataclass
class _Job:
    number: int
    args: list[str]
    folder: Path
    resumed: bool = False


@dataclass
class SweepResult:
    """What a sweep ended with: every trial, the best one, and whether it was interrupted."""

    sweep_dir: Path
    spec: SweepSpec
    trials: list[Any]
    best: Any | None
    interrupted: bool = False
    resumed: list[int] = field(default_factory=list)


class _NumberSeeded:
    """TPE whose random stream depends on the seed and the trial's number only.

    Workers started together would otherwise propose the same parameters; and a continued
    sweep would repeat its first trials' values.
    """

    def __init__(self, seed: int | None) -> None:
        import optuna

        self.seed = seed
        self.base = optuna.samplers.TPESampler(seed=seed)

    def before_trial(self, study: Any, trial: Any) -> None:
        import optuna

        if self.seed is not None:
            self.base = optuna.samplers.TPESampler(seed=self.seed + trial.number)
        self.base.before_trial(study, trial)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


_WAIT = _Job(-1, [], Path())


class Sweep:
    """One worker of a sweep: runs trials of its study until ``trials`` have ended in all.

    Args:
        spec: The search.
        sweep_dir: This worker's run root (created if missing); trials go to ``trials/``.
        trials: Trials to end in total, by every worker, counting those ended before a restart.
        jobs: Trials this worker runs in parallel, each a process (or a launcher's job).
        workers: The shared storage and how trials are retried and launched.
    """

    def __init__(
        self,
        *,
        spec: SweepSpec,
        sweep_dir: Path,
        trials: int,
        jobs: int,
        workers: Workers | None = None,
    ) -> None:
        require_optuna()
        self.spec = spec
        self.dir = Path(sweep_dir).absolute()  # recorded in the study: other hosts read it
        self.trials = trials
        self.jobs = jobs
        self.workers = workers or Workers()
        self.url = self.workers.storage or study_url(self.dir)
        self.me = worker_id()
        self.distributions = {k: distribution(v) for k, v in spec.space.items()}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._signalled: set[int] = set()
        self._pending: list[_Job] = []
        self._owned: dict[int, tuple[int, Any]] = {}  # number -> (trial id, claim file)
        self._error: UserError | None = None
        self._resumed: list[int] = []
        self.study: Any = None

    def run(self) -> SweepResult:
        """Takes over orphaned trials, runs new ones until ``trials`` have ended, returns.

        Raises:
            UserError: The study holds another search, or a trial's flags are wrong.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        self._open_study()
        pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="trial")
        beats = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        beats.start()
        try:
            with self._signals_forwarded(), pool:
                futures = [pool.submit(self._worker) for _ in range(self.jobs)]
                for f in futures:
                    f.result()
        finally:
            self._release_all()
        if self._error is not None:
            raise self._error
        trials = [t for t in self.study.get_trials(deepcopy=False) if not superseded(t)]
        best = self.study.best_trial if any(t.state.name == "COMPLETE" for t in trials) else None
        return SweepResult(self.dir, self.spec, trials, best, self._stop.is_set(), self._resumed)

    # ------------------------------------------------------------------ set-up
    def _open_study(self) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.dir.mkdir(parents=True, exist_ok=True)
        search = json.loads(json.dumps(self.spec.search()))
        saved = {
            "study": self.workers.study,
            "storage": mask(self.url),
            "metric": self.spec.metric,
            "direction": self.spec.direction,
            "pruner": self.spec.pruner,
            "search": search,
        }
        spec_path = self.dir / SPEC_FILE
        if spec_path.is_file():
            previous = json.loads(spec_path.read_text())
            if previous.get("study", STUDY_NAME) != self.workers.study:
                raise UserError(
                    f"{self.dir} holds the trials of study {previous.get('study')!r}, not "
                    f"{self.workers.study!r}; pass another --dir"
                )
            self._refuse_other(previous.get("search"), search, str(self.dir))
        store = open_storage(self.url)
        self.study = _create_study(store, self.workers.study, self.spec.direction)
        stored = self.study.user_attrs.get(SEARCH_ATTR)
        if stored is None:
            self.study.set_user_attr(SEARCH_ATTR, search)
        else:
            where = f"study {self.workers.study!r} in {mask(self.url)}"
            self._refuse_other(stored, search, where)
        (self.dir / "trials").mkdir(parents=True, exist_ok=True)
        (self.dir / "claims").mkdir(exist_ok=True)
        tmp = spec_path.with_name(f".{SPEC_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(saved, indent=1) + "\n")
        os.replace(tmp, spec_path)
        self.study.sampler = _NumberSeeded(self.spec.seed)

    @staticmethod
    def _refuse_other(saved: Any, current: Any, where: str) -> None:
        diff = first_difference(saved, current)
        if saved is not None and diff:
            raise UserError(
                f"{where} holds a sweep with another search ({diff}); pass another --study "
                "(and --dir), or use the config it started with"
            )

    def trial_dir(self, number: int) -> Path:
        """The run folder of trial ``number`` when this worker starts it."""
        return self.dir / "trials" / f"trial-{number:04d}"

    # ------------------------------------------------------------------ the loop
    def _worker(self) -> None:
        while not self._stop.is_set():
            job = self._next_job()
            if job is None:
                return
            if job is _WAIT:
                self._stop.wait(min(self.workers.heartbeat, 2.0))
                continue
            self._run(job)

    def _next_job(self) -> _Job | None:
        """A trial to run: one given back, one taken over, a new one; else wait, or None: done."""
        with self._lock:
            if self._stop.is_set():
                return None
            if self._pending:
                return self._pending.pop(0)
            trials = self.study.get_trials(deepcopy=False)
            ended, live = counts(trials)
            if ended >= self.trials:
                return None
            for t in trials:
                if t.state.name == "RUNNING" and t.number not in self._owned:
                    job = self._take_over(t)
                    if job is not None:
                        return job
            if ended + live >= self.trials:
                return _WAIT
            return self._ask()

    def _ask(self) -> _Job:
        trial = self.study.ask(self.distributions)
        if rank(self.study.get_trials(deepcopy=False), trial.number) >= self.trials:
            # Another worker asked at the same moment and the budget is spent: drop this one.
            self.study._storage.set_trial_system_attr(trial._trial_id, SURPLUS, True)
            self.study.tell(trial.number, state=_state("FAIL"), skip_if_finished=True)
            return _WAIT
        folder = self.trial_dir(trial.number)
        retries = int(trial.user_attrs.get("retries", 0))
        self._own(trial.number, trial._trial_id, folder, retries=retries)
        return self._fresh_job(trial.number, trial.params, folder)

    def _own(self, number: int, trial_id: int, folder: Path, *, retries: int) -> bool:
        """Claims a trial: a lock held while this worker runs it, and the study's record of it."""
        claim = _claim(folder)
        if claim is None:
            return False
        store = self.study._storage
        attrs = {WORKER: self.me, HEARTBEAT: time.time(), RETRIES: retries, RUN_DIR: str(folder)}
        for key, value in attrs.items():
            store.set_trial_system_attr(trial_id, key, value)
        store.set_trial_user_attr(trial_id, "host", socket.gethostname())
        store.set_trial_user_attr(trial_id, "run_dir", str(folder))
        self._owned[number] = (trial_id, claim)
        return True

    def _take_over(self, t: Any) -> _Job | None:
        """Takes over a running trial whose worker is gone (dead here, or silent past the grace).

        Its run folder reachable: it is resumed there from its last checkpoint (same number).
        Not reachable: it is failed as lost and asked again with the same parameters.
        """
        attrs = t.system_attrs
        if WORKER in attrs and not (attrs.get(RELEASED) or stale(attrs, self.workers.grace)):
            return None
        if WORKER not in attrs and not _started_before(t, self.workers.grace):
            return None  # just asked; its worker is writing its record
        run_dir = attrs.get(RUN_DIR) or t.user_attrs.get("run_dir")
        folder = Path(run_dir) if run_dir else self.trial_dir(t.number)
        retries = int(attrs.get(RETRIES, 0)) + (0 if attrs.get(RELEASED) else 1)
        who = attrs.get(WORKER, "its worker").split(":")[0]
        if retries > self.workers.max_retries:
            note = f"its worker was lost {retries} times (--max-retries {self.workers.max_retries})"
            self._fail(t, note)
            return None
        if not folder.parent.is_dir():
            self._retry_elsewhere(t, retries, f"lost with {who}; {folder} is not reachable here")
            return None
        if not self._own(t.number, t._trial_id, folder, retries=retries):
            return None  # another live worker holds it
        self.study._storage.set_trial_system_attr(t._trial_id, RELEASED, False)
        if not _ended(folder):
            self._release(t.number)
            return None
        outcome = self._outcome(folder, rc=None)
        if outcome is not None:  # it had ended; its worker died before telling the study
            self._tell(t.number, outcome)
            return None
        log.info("trial %d: taken over from %s", t.number, attrs.get(WORKER, "a lost worker"))
        self._resumed.append(t.number)
        params = {k: t.params[k] for k in self.spec.space if k in t.params}
        return self._restart_job(t.number, params, folder)

    def _restart_job(self, number: int, params: dict[str, Any], folder: Path) -> _Job:
        if (folder / "checkpoints" / "latest.pt").is_file():
            return _Job(number, ["--resume", str(folder), "--no-progress"], folder, resumed=True)
        # cut off before its first checkpoint: nothing to keep, start it again
        return self._fresh_job(number, params, folder, overwrite=True)

    def _retry_elsewhere(self, t: Any, retries: int, note: str) -> None:
        """Fails a lost trial whose folder is out of reach and asks for it again, from the start."""
        from optuna.exceptions import UpdateFinishedTrialError

        store = self.study._storage
        store.set_trial_system_attr(t._trial_id, LOST, True)
        store.set_trial_system_attr(t._trial_id, REASON, note)
        try:  # only one worker gets here first: the state change is the study's lock
            store.set_trial_state_values(t._trial_id, _state("FAIL"))
        except (UpdateFinishedTrialError, RuntimeError):
            return
        log.info("trial %d: %s; asked again", t.number, note)
        self.study.enqueue_trial(
            dict(t.params), user_attrs={RETRY_OF_USER: t.number, "retries": retries}
        )

    def _fail(self, t: Any, note: str) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        self.study._storage.set_trial_system_attr(t._trial_id, REASON, note)
        with contextlib.suppress(UpdateFinishedTrialError, RuntimeError):
            self.study._storage.set_trial_state_values(t._trial_id, _state("FAIL"))
            log.info("trial %d: fail, %s", t.number, note)

    def _fresh_job(
        self, number: int, params: dict[str, Any], folder: Path, *, overwrite: bool = False
    ) -> _Job:
        args = to_flags({**self.spec.fixed, **decode_params(self.spec, params)})
        args += ["--run-dir", str(folder), "--no-progress"]
        return _Job(number, args + (["--overwrite"] if overwrite else []), folder)

    # ------------------------------------------------------------------ one trial
    def _run(self, job: _Job) -> None:
        logs = self.dir / "logs"
        logs.mkdir(exist_ok=True)
        env = {
            **os.environ,
            ENV_DIR: str(self.dir.resolve()),
            ENV_TRIAL: str(job.number),
            ENV_PARENT: str(os.getpid()),
            ENV_STORAGE: self.url,  # the environment, not argv: `ps` shows no password
        }
        if "OMP_NUM_THREADS" not in os.environ:
            # Parallel trials share the cores: by default each would spin one OpenMP thread
            # per core, and oversubscribed CPU training runs many times slower.
            share = self.jobs * self.workers.nproc
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // share))
        cmd = launcher_command(self.workers, job.args)
        log.info("trial %d: %s", job.number, "resuming" if job.resumed else shlex.join(job.args))
        with (logs / f"trial-{job.number:04d}.log").open("ab") as out:
            out.write(f"$ {shlex.join(cmd)}\n".encode())
            out.flush()
            # Its own session: a Ctrl-C in the terminal reaches the sweep only, which then
            # asks each trial once to checkpoint and stop.
            with self._lock:  # a stop that came meanwhile must reach this child too
                if self._stop.is_set():
                    return  # still RUNNING in the study: released, the next run starts it
                proc = subprocess.Popen(
                    cmd,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,
                )
                self._children[job.number] = proc
            rc = proc.wait()
            with self._lock:
                self._children.pop(job.number, None)
                signalled = job.number in self._signalled or self._stop.is_set()
        outcome = self._outcome(job.folder, rc=rc, signalled=signalled)
        if outcome is None:  # stopped by a signal: stays RUNNING, to be resumed
            if self._stop.is_set():
                log.info("trial %d: interrupted; the next run of this sweep resumes it", job.number)
                return
            resume = ["--resume", str(job.folder), "--no-progress"]
            with self._lock:  # signalled on its own while the sweep goes on: resume it now
                self._pending.append(_Job(job.number, resume, job.folder, resumed=True))
            return
        with self._lock:
            self._tell(job.number, outcome)

    def _outcome(
        self, folder: Path, *, rc: int | None, signalled: bool = False
    ) -> tuple[str, float | None, str] | None:
        """How a trial ended, from its run folder: ``(state, value, note)``; None if it did not.

        A trial the sweep stopped (its Ctrl-C or SIGTERM, forwarded) has not ended, whatever
        moment the signal caught it at: start-up, training or saving.
        """
        status = load_status(folder) or {}
        state = status.get("state")
        trial_file = folder / TRIAL_FILE
        report = json.loads(trial_file.read_text()) if trial_file.is_file() else {}
        if state == "finished":
            if report.get("pruned"):
                return "PRUNED", None, status.get("stop_reason") or "pruned"
            if report.get("value") is None:
                return "FAIL", None, f"no {self.spec.metric} was reported"
            return "COMPLETE", float(report["value"]), ""
        if signalled:
            return None
        if state in ("nan", "failed"):
            return "FAIL", None, describe(status)
        if state == "interrupted" or (rc is None and state in (None, "running")):
            return None
        if rc == 2 and state is None:  # refused its flags: every other trial would be too
            last = _last_line(self.dir / "logs" / f"{folder.name}.log")
            self._error = UserError(
                f"trial {folder.name} refused its flags: {last}; fix the sweep config"
            )
            self._stop.set()
        return "FAIL", None, f"exit code {rc}"

    def _tell(self, number: int, outcome: tuple[str, float | None, str]) -> None:
        state, value, note = outcome
        trial_id = self._owned[number][0] if number in self._owned else None
        if note and trial_id is not None:
            self.study._storage.set_trial_system_attr(trial_id, REASON, note)
        if state == "COMPLETE":
            self.study.tell(number, value, skip_if_finished=True)
        else:
            self.study.tell(number, state=_state(state), skip_if_finished=True)
        self._release(number)
        ended, _ = counts(self.study.get_trials(deepcopy=False))
        shown = f"{self.spec.metric} {value:.4f}" if value is not None else note
        log.info(
            "trial %d: %s, %s (%d of %d ended)", number, state.lower(), shown, ended, self.trials
        )

    def _release(self, number: int) -> None:
        owned = self._owned.pop(number, None)
        if owned is not None:
            owned[1].close()

    def _release_all(self) -> None:
        """Gives back the trials this worker stops holding: any worker may take them at once."""
        with self._lock:
            for number, (trial_id, claim) in list(self._owned.items()):
                with contextlib.suppress(Exception):  # finished meanwhile: nothing to give
                    self.study._storage.set_trial_system_attr(trial_id, RELEASED, True)
                claim.close()
                self._owned.pop(number)

    def _beat(self) -> None:
        """Refreshes the heartbeat of every trial this worker runs, until the process ends."""
        while True:
            time.sleep(self.workers.heartbeat)
            with self._lock:
                owned = [trial_id for trial_id, _ in self._owned.values()]
            for trial_id in owned:
                try:
                    self.study._storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())
                except Exception as e:  # ended meanwhile, or the database blinked
                    log.debug("heartbeat of trial id %d: %s", trial_id, e)

    @contextlib.contextmanager
    def _signals_forwarded(self) -> Iterator[None]:
        """SIGINT/SIGTERM stop new trials and ask running ones once to checkpoint and stop."""
        import signal

        def handler(signum: int, frame: Any) -> None:
            if self._stop.is_set():
                return
            self._stop.set()
            with self._lock:
                for number, proc in self._children.items():
                    self._signalled.add(number)
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGTERM)

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def _create_study(store: Any, name: str, direction: str) -> Any:
    import optuna

    return optuna.create_study(
        study_name=name,
        storage=store,
        direction=cast(Literal["minimize", "maximize"], direction),
        load_if_exists=True,
    )


def _claim(folder: Path) -> Any | None:
    """An OS lock on ``ROOT/claims/TRIAL.lock`` beside the trial's ``ROOT/trials/TRIAL``.

    Held by the worker that runs the trial and freed by the kernel when that worker dies, so
    of the workers that find a trial orphaned exactly one takes it over.
    """
    import fcntl

    claims = folder.parent.parent / "claims"
    claims.mkdir(parents=True, exist_ok=True)
    f = (claims / f"{folder.name}.lock").open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def _started_before(t: Any, grace: float) -> bool:
    import datetime

    start = t.datetime_start
    return start is None or (datetime.datetime.now() - start).total_seconds() > grace


def _state(name: str) -> Any:
    from optuna.trial import TrialState

    return TrialState[name]


def _last_line(path: Path) -> str:
    try:
        lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return "see its log"
    return lines[-1] if lines else "see its log"


# How long a rerun waits for the trials of a killed sweep to finish dying: each got the
# parent-death signal and is saving its checkpoint, which takes a while on a busy machine.
_DYING_TRIAL_WAIT_S = 120.0


def _ended(folder: Path) -> bool:
    """Whether a trial folder's training process has ended, waiting for one that is dying."""
    from torchstyle.experiments.status import read_status

    deadline = time.monotonic() + _DYING_TRIAL_WAIT_S
    while (read_status(folder) or {}).get("state") == "running":
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True
