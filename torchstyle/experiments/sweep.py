"""``torchstyle sweep --config sweep.toml``: a hyperparameter search on Optuna.

Every trial is an ordinary ``torchstyle train`` subprocess writing an ordinary run folder in
``SWEEP/trials/``, so ``runs``, ``test`` and ``--resume`` work on trials. The study lives in
``SWEEP/study.db`` (SQLite). The trial itself reports its per-epoch validation metric to the
study and asks the pruner (:mod:`torchstyle.experiments.trial`); this process asks Optuna for
parameters, starts trials (``--jobs`` at a time) and tells the study how each ended.

A sweep killed at any moment continues with the same command. A trial the kill cut off is
still ``RUNNING`` in the study; the rerun **resumes** it from its run folder's latest checkpoint
(or starts it again in the same folder if it had none) with the same parameters and trial
number, so no trial is lost or counted twice. ``--trials N`` counts ended trials: complete,
pruned, or failed by their own error (a diverging learning rate is a result too).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from torchstyle.errors import UserError
from torchstyle.experiments.status import describe, load_status
from torchstyle.experiments.trial import (
    ENV_DIR,
    ENV_PARENT,
    ENV_TRIAL,
    SPEC_FILE,
    TRIAL_FILE,
    require_optuna,
    storage,
)

log = logging.getLogger(__name__)

STUDY_NAME = "sweep"
PRUNERS = ("median", "hyperband", "none")
# Flags a sweep owns: each trial gets its own folder and no progress bar.
RESERVED = frozenset({"run_dir", "resume", "overwrite", "progress", "config"})
_SPACE_KEYS = {
    "int": {"type", "low", "high", "step", "log"},
    "float": {"type", "low", "high", "step", "log"},
    "categorical": {"type", "choices"},
}


@dataclass
class SweepSpec:
    """A sweep's search: what varies, what is fixed, what is optimized and how trials are pruned."""

    space: dict[str, dict[str, Any]]
    fixed: dict[str, Any] = field(default_factory=dict)
    metric: str = "accuracy"
    direction: str = "maximize"
    pruner: dict[str, Any] = field(default_factory=lambda: {"type": "median"})
    seed: int | None = None
    trials: int = 10
    jobs: int = 1

    def search(self) -> dict[str, Any]:
        """The part that must not change between a sweep and its continuation."""
        d = dataclasses.asdict(self)
        return {k: d[k] for k in ("space", "fixed", "metric", "direction", "pruner", "seed")}


def _flag_names() -> set[str]:
    from torchstyle.config import TrainConfig

    return {f.name for f in dataclasses.fields(TrainConfig)}


def _check_flag(name: str, where: str, known: set[str]) -> str:
    """Normalizes ``batch-size`` to ``batch_size``; refuses unknown and sweep-owned flags."""
    key = name.replace("-", "_")
    if key.startswith("model_args.") or key.startswith("model_arg."):
        return "model_args." + key.split(".", 1)[1]
    if key not in known:
        raise UserError(
            f"{where}: {name!r} is not a train flag; use a `torchstyle train` flag name "
            "(e.g. lr, batch_size, optimizer) or model_args.NAME"
        )
    if key in RESERVED:
        raise UserError(f"{where}: {name!r} is set by the sweep itself; remove it")
    return key


def _check_space(name: str, spec: Any, where: str) -> dict[str, Any]:
    if not isinstance(spec, dict) or spec.get("type") not in _SPACE_KEYS:
        raise UserError(
            f'{where}.{name}: give a table with type = "int", "float" or "categorical", '
            'e.g. {type = "float", low = 1e-4, high = 0.1, log = true}'
        )
    kind = spec["type"]
    extra = sorted(set(spec) - _SPACE_KEYS[kind])
    if extra:
        raise UserError(f"{where}.{name}: unknown key(s) {', '.join(extra)} for a {kind} parameter")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UserError(f"{where}.{name}: choices must be a non-empty list")
        return {"type": kind, "choices": choices}
    number = int if kind == "int" else (int, float)
    low, high = spec.get("low"), spec.get("high")
    ok = all(isinstance(v, number) and not isinstance(v, bool) for v in (low, high))
    if not ok or low is None or high is None or low >= high:
        raise UserError(
            f"{where}.{name}: a {kind} parameter needs numbers low < high, got {low!r}, {high!r}"
        )
    if spec.get("log") and float(low) <= 0:
        raise UserError(f"{where}.{name}: a log-scale range needs low > 0, got {low!r}")
    if spec.get("log") and spec.get("step") is not None:
        raise UserError(f"{where}.{name}: pick log or step, not both")
    return {k: spec[k] for k in ("type", "low", "high", "step", "log") if k in spec}


def parse_spec(data: dict[str, Any], source: str) -> SweepSpec:
    """Validates a sweep config (the parsed TOML/JSON).

    Raises:
        UserError: An unknown key, flag or parameter type, or a bad range; the message says where.
    """
    allowed = {"space", "fixed", "metric", "direction", "pruner", "seed", "trials", "jobs"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise UserError(
            f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}"
        )
    known = _flag_names()
    space_in = data.get("space")
    if not isinstance(space_in, dict) or not space_in:
        raise UserError(
            f'{source}: add a [space] table, e.g. lr = {{type = "float", low = 1e-4, high = 0.1, log = true}}'
        )
    space = {
        _check_flag(k, f"{source} [space]", known): _check_space(k, v, f"{source} [space]")
        for k, v in space_in.items()
    }
    fixed: dict[str, Any] = {}
    for k, v in (data.get("fixed") or {}).items():
        key = _check_flag(k, f"{source} [fixed]", known)
        if key == "model_args" and isinstance(v, dict):
            fixed.update({f"model_args.{a}": b for a, b in v.items()})
        else:
            fixed[key] = v
    both = sorted(set(space) & set(fixed))
    if both:
        raise UserError(f"{source}: {', '.join(both)} both fixed and searched; keep one")
    pruner = data.get("pruner", {"type": "median"})
    if isinstance(pruner, str):
        pruner = {"type": pruner}
    if not isinstance(pruner, dict) or pruner.get("type", "median") not in PRUNERS:
        raise UserError(f"{source}: pruner type must be one of {', '.join(PRUNERS)}")
    pruner = {"type": "median", **pruner}
    if pruner["type"] == "hyperband" and "max_epochs" not in pruner and "epochs" in fixed:
        pruner["max_epochs"] = int(fixed["epochs"])
    direction = data.get("direction", "maximize")
    if direction not in ("maximize", "minimize"):
        raise UserError(f"{source}: direction must be maximize or minimize, got {direction!r}")
    spec = SweepSpec(
        space=space,
        fixed=fixed,
        metric=str(data.get("metric", "accuracy")),
        direction=direction,
        pruner=pruner,
        seed=data.get("seed"),
    )
    for name in ("trials", "jobs"):
        if name in data:
            setattr(spec, name, _positive(data[name], f"{source}: {name}"))
    return spec


def _positive(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"{what} must be a positive integer, got {value!r}")
    return value


def _distribution(spec: dict[str, Any]) -> Any:
    import optuna.distributions as d

    if spec["type"] == "categorical":  # lists (hidden = [64, 64]) are stored as JSON text
        return d.CategoricalDistribution([_encode(c) for c in spec["choices"]])
    log = bool(spec.get("log", False))
    step = spec.get("step")
    if spec["type"] == "int":
        return d.IntDistribution(
            spec["low"], spec["high"], log=log, step=1 if step is None else step
        )
    return d.FloatDistribution(spec["low"], spec["high"], log=log, step=step)


def _encode(choice: Any) -> Any:
    return (
        choice
        if choice is None or isinstance(choice, (bool, int, float, str))
        else json.dumps(choice)
    )


def decode_params(spec: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters as flag values: JSON-encoded categorical choices decoded."""
    out = {}
    for key, value in params.items():
        space = spec.space.get(key, {})
        choices = space.get("choices") or []
        out[key] = next((c for c in choices if _encode(c) == value), value)
    return out


def to_flags(settings: dict[str, Any]) -> list[str]:
    """``torchstyle train`` arguments for flat settings (``model_args.X`` -> ``--model-arg X=V``)."""
    args: list[str] = []
    for key, value in settings.items():
        if key.startswith("model_args."):
            args += ["--model-arg", f"{key.split('.', 1)[1]}={json.dumps(value)}"]
        elif isinstance(value, bool):
            args.append(f"--{'' if value else 'no-'}{key.replace('_', '-')}")
        elif value is not None:
            args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def command_line(spec: SweepSpec, params: dict[str, Any]) -> str:
    """The full ``torchstyle train`` command of a trial, ready to paste."""
    settings = {**spec.fixed, **decode_params(spec, params)}
    return shlex.join(["torchstyle", "train", *to_flags(settings)])


@dataclass
class _Job:
    number: int
    args: list[str]
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


@contextlib.contextmanager
def _sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """An OS lock on the sweep folder: two sweeps on one study would run trials twice."""
    import fcntl

    path = sweep_dir / ".sweep.lock"
    with path.open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise UserError(
                f"sweep folder {sweep_dir} is in use by {holder}; wait for it, or pass another --dir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)


class Sweep:
    """Runs (or continues) the trials of one sweep folder.

    Args:
        spec: The search.
        sweep_dir: The sweep folder (created if missing).
        trials: Trials to end in total, counting those ended before a restart.
        jobs: Trials run in parallel, each a process.
    """

    def __init__(self, *, spec: SweepSpec, sweep_dir: Path, trials: int, jobs: int) -> None:
        require_optuna()
        self.spec = spec
        self.dir = Path(sweep_dir)
        self.trials = trials
        self.jobs = jobs
        self.distributions = {k: _distribution(v) for k, v in spec.space.items()}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._pending: list[_Job] = []
        self._ended = 0
        self._inflight = 0
        self._error: UserError | None = None
        self.study: Any = None

    def run(self) -> SweepResult:
        """Resumes cut-off trials, runs new ones until ``trials`` have ended, returns the result.

        Raises:
            UserError: The folder holds another search, is in use, or a trial's flags are wrong.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        with _sweep_lock(self.dir):
            self._open_study()
            resumed = self._recover()
            pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="trial")
            with self._signals_forwarded(), pool:
                futures = [pool.submit(self._worker) for _ in range(self.jobs)]
                for f in futures:
                    f.result()
            if self._error is not None:
                raise self._error
            trials = self.study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state.name == "COMPLETE"]
        best = None
        if finished:
            best = self.study.best_trial
        return SweepResult(self.dir, self.spec, trials, best, self._stop.is_set(), resumed)

    # ------------------------------------------------------------------ set-up
    def _open_study(self) -> None:
        import optuna

        from torchstyle.experiments.trial import study_url

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        spec_path = self.dir / SPEC_FILE
        saved = {
            "study": STUDY_NAME,
            "metric": self.spec.metric,
            "direction": self.spec.direction,
            "pruner": self.spec.pruner,
            "search": self.spec.search(),
        }
        if spec_path.is_file():
            previous = json.loads(spec_path.read_text())
            if previous.get("search") != json.loads(json.dumps(saved["search"])):
                raise UserError(
                    f"{self.dir} holds a sweep with another search (space, fixed flags, metric or "
                    "pruner); pass another --dir for this one, or restore the config it started with"
                )
        else:
            (self.dir / "trials").mkdir(parents=True, exist_ok=True)
            tmp = spec_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(saved, indent=1) + "\n")
            os.replace(tmp, spec_path)
        self.study = optuna.create_study(
            study_name=STUDY_NAME,
            storage=storage(study_url(self.dir)),
            direction=cast(Literal["minimize", "maximize"], self.spec.direction),
            load_if_exists=True,
        )
        done = self.study.get_trials(deepcopy=False)
        # A fresh seed per restart: the same seed would propose the first trials' values again.
        seed = None if self.spec.seed is None else self.spec.seed + len(done)
        self.study.sampler = optuna.samplers.TPESampler(seed=seed)
        self._ended = sum(t.state.is_finished() for t in done)

    def trial_dir(self, number: int) -> Path:
        """The run folder of trial ``number``."""
        return self.dir / "trials" / f"trial-{number:04d}"

    def _recover(self) -> list[int]:
        """Finds trials a kill cut off: tells those that had ended, queues the others to resume."""
        resumed = []
        for t in self.study.get_trials(deepcopy=False, states=(_state("RUNNING"),)):
            folder = self.trial_dir(t.number)
            status = load_status(folder)
            if status and status.get("state") == "running" and not _ended(folder):
                raise UserError(
                    f"trial {t.number} is still {describe(status)}; stop it or wait, then rerun"
                )
            outcome = self._outcome(folder, rc=None)
            if outcome is not None:
                self._tell(t.number, outcome)
                continue
            params = {k: t.params[k] for k in self.spec.space if k in t.params}
            if (folder / "checkpoints" / "latest.pt").is_file():
                job = _Job(t.number, ["--resume", str(folder), "--no-progress"], resumed=True)
            else:  # cut off before its first checkpoint: nothing to keep, start it again
                job = self._fresh_job(t.number, params, overwrite=True)
            self._pending.append(job)
            resumed.append(t.number)
        return resumed

    def _fresh_job(self, number: int, params: dict[str, Any], *, overwrite: bool = False) -> _Job:
        args = to_flags({**self.spec.fixed, **decode_params(self.spec, params)})
        args += ["--run-dir", str(self.trial_dir(number)), "--no-progress"]
        return _Job(number, args + (["--overwrite"] if overwrite else []))

    # ------------------------------------------------------------------ the loop
    def _worker(self) -> None:
        while not self._stop.is_set():
            job = self._next_job()
            if job is None:
                return
            try:
                self._run(job)
            finally:
                with self._lock:
                    self._inflight -= 1

    def _next_job(self) -> _Job | None:
        with self._lock:
            if self._stop.is_set():
                return None
            if self._pending:
                self._inflight += 1
                return self._pending.pop(0)
            if self._ended + self._inflight >= self.trials:
                return None
            trial = self.study.ask(self.distributions)
            trial.set_user_attr("run_dir", str(self.trial_dir(trial.number)))
            self._inflight += 1
            return self._fresh_job(trial.number, trial.params)

    def _run(self, job: _Job) -> None:
        folder = self.trial_dir(job.number)
        logs = self.dir / "logs"
        logs.mkdir(exist_ok=True)
        env = {
            **os.environ,
            ENV_DIR: str(self.dir.resolve()),
            ENV_TRIAL: str(job.number),
            ENV_PARENT: str(os.getpid()),
        }
        if "OMP_NUM_THREADS" not in os.environ:
            # Parallel trials share the cores: by default each would spin one OpenMP thread
            # per core, and oversubscribed CPU training runs many times slower.
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.jobs))
        cmd = [sys.executable, "-m", "torchstyle", "train", *job.args]
        log.info("trial %d: %s", job.number, "resuming" if job.resumed else shlex.join(job.args))
        with (logs / f"trial-{job.number:04d}.log").open("ab") as out:
            out.write(f"$ {shlex.join(cmd)}\n".encode())
            out.flush()
            # Its own session: a Ctrl-C in the terminal reaches the sweep only, which then
            # asks each trial once to checkpoint and stop.
            with self._lock:  # a stop that came meanwhile must reach this child too
                if self._stop.is_set():
                    return  # still RUNNING in the study: the next run starts it
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
        outcome = self._outcome(folder, rc=rc)
        if outcome is None:  # stopped by a signal: stays RUNNING, to be resumed
            if self._stop.is_set():
                log.info("trial %d: interrupted; the next run of this sweep resumes it", job.number)
                return
            resume = ["--resume", str(folder), "--no-progress"]
            with self._lock:  # signalled on its own while the sweep goes on: resume it now
                self._pending.append(_Job(job.number, resume, resumed=True))
            return
        with self._lock:
            self._tell(job.number, outcome)

    def _outcome(self, folder: Path, *, rc: int | None) -> tuple[str, float | None, str] | None:
        """How a trial ended, from its run folder: ``(state, value, note)``; None if it did not."""
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
        if state == "COMPLETE":
            self.study.tell(number, value, skip_if_finished=True)
        else:
            self.study.tell(number, state=_state(state), skip_if_finished=True)
        self._ended += 1
        shown = f"{self.spec.metric} {value:.4f}" if value is not None else note
        log.info(
            "trial %d: %s, %s (%d of %d ended)",
            number,
            state.lower(),
            shown,
            self._ended,
            self.trials,
        )

    @contextlib.contextmanager
    def _signals_forwarded(self) -> Iterator[None]:
        """SIGINT/SIGTERM stop new trials and ask running ones once to checkpoint and stop."""
        import signal

        def handler(signum: int, frame: Any) -> None:
            if self._stop.is_set():
                return
            self._stop.set()
            with self._lock:
                for proc in self._children.values():
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGTERM)

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


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
