"""CLI glue for ``torchstyle runs`` and ``torchstyle sweep``: parse, call the library, format.

``torchstyle.cli`` finds ``add_runs_arguments``/``run_runs`` and
``add_sweep_arguments``/``run_sweep`` here by name, like every subcommand's.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from torchstyle import extras
from torchstyle.errors import UserError
from torchstyle.output import CommandOutput

ENV_STORAGE_URL = "TORCHSTYLE_SWEEP_STORAGE"


# ---------------------------------------------------------------------------------- runs
def add_runs_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``runs`` flags."""
    parser.epilog = (
        "Filters: KEY OP VALUE with = != < <= > >= or ~ (contains), on a column (name, status, "
        "model, data, best, test, steps, wall_time, samples_per_sec) or any train flag "
        "(lr, batch_size, model_args.hidden). Example: torchstyle runs runs/ --filter status=finished "
        "--filter 'lr<0.01' --sort=-best"
    )
    parser.add_argument(
        "dirs", nargs="*", metavar="DIR", help="run folders or folders holding them (default: runs)"
    )
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="EXPR",
        help="keep rows where EXPR holds; repeatable",
    )
    parser.add_argument(
        "--sort",
        metavar="KEY",
        help="sort by a column or flag; -KEY (write --sort=-KEY) for descending",
    )
    parser.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="output format (default: table)",
    )
    parser.add_argument(
        "--plot",
        metavar="METRIC",
        help="write a PNG of METRIC's curves (e.g. val/accuracy, train/loss)",
    )
    parser.add_argument(
        "--output", metavar="PNG", help="the --plot file (default: a new runs-METRIC.png)"
    )


def _free_name(metric: str) -> Path:
    stem = "runs-" + metric.replace("/", "_")
    path, n = Path(f"{stem}.png"), 2
    while path.exists():
        path, n = Path(f"{stem}-{n}.png"), n + 1
    return path


def run_runs(args: argparse.Namespace) -> CommandOutput:
    """Lists, or with ``--plot`` plots, the runs under the given folders."""
    from torchstyle.experiments.runs import FORMATS, list_runs

    dirs = args.dirs or ["runs"]
    if not args.dirs and not Path("runs").is_dir():
        raise UserError(
            "no runs/ folder here; pass the folders that hold your runs: torchstyle runs DIR"
        )
    if args.plot:
        extras.require("experiments", "--plot", ("matplotlib",))
    rows = list_runs(dirs, filters=args.filter, sort=args.sort)
    if args.plot:
        from torchstyle.experiments.plot import plot_runs

        if args.output and Path(args.output).suffix.lower() != ".png":
            raise UserError(f"--output {args.output}: the plot is a PNG; name the file *.png")
        output = Path(args.output) if args.output else _free_name(args.plot)
        path, n = plot_runs(rows, args.plot, output)
        return CommandOutput(stdout=f"wrote {path} ({n} runs)\n")
    if args.output:
        raise UserError(
            "--output names the --plot file; add --plot METRIC, or redirect the listing with >"
        )
    return CommandOutput(stdout=FORMATS[args.format](rows))


# ---------------------------------------------------------------------------------- sweep
def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``sweep`` flags."""
    parser.epilog = (
        "Rerun the same command to continue a sweep that was stopped or killed: trials cut off "
        "mid-way are resumed from their checkpoints. The same command on several machines (or "
        "several times) with one --storage makes workers that share the study. "
        "See docs/experiments.md for sweep.toml and the PostgreSQL set-up."
    )
    parser.add_argument("--config", metavar="FILE", help="sweep config (TOML or JSON)")
    parser.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help="trials to end in total, by all workers (default: the config's, else 10)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        metavar="J",
        help="trials this worker runs in parallel processes (default: the config's, else 1)",
    )
    parser.add_argument(
        "--dir",
        metavar="DIR",
        help="this worker's run root (default: sweeps/CONFIG-NAME, or sweeps/STUDY/HOST with --storage)",
    )
    parser.add_argument(
        "--storage",
        metavar="URL",
        default=os.environ.get(ENV_STORAGE_URL),
        help="the study's storage: postgresql://USER@HOST:PORT/DB, mysql://..., sqlite:///FILE "
        f"or journal:PATH (default: ${ENV_STORAGE_URL}, else DIR/study.db); give the password "
        "in $TORCHSTYLE_STORAGE_PASSWORD or a file named by $TORCHSTYLE_STORAGE_PASSWORD_FILE",
    )
    parser.add_argument(
        "--study",
        metavar="NAME",
        help="the study's name (default: the config's study, else its file name)",
    )
    parser.add_argument(
        "--status", action="store_true", help="print the whole study's trials and exit"
    )
    _add_worker_arguments(parser)


def _add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of workers sharing a study: retries, heartbeats and multi-process trials."""
    parser.add_argument(
        "--max-retries",
        type=int,
        default=3,
        metavar="N",
        help="times a trial whose worker was lost is run again before it fails (default: 3)",
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds between a running trial's heartbeats (default: 10)",
    )
    parser.add_argument(
        "--grace-period",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds without a heartbeat before another worker takes a trial over (default: 60)",
    )
    parser.add_argument(
        "--nproc-per-trial",
        type=int,
        default=1,
        metavar="N",
        help="processes per trial, started with torchrun (or --launcher) (default: 1)",
    )
    parser.add_argument(
        "--launcher",
        metavar="TEMPLATE",
        help="the command that starts a trial, with {args} (the train flags) or {cmd}, and "
        "{nproc}, {python}; e.g. 'srun --ntasks {nproc} {cmd}'",
    )


def _workers(args: argparse.Namespace, study: str) -> Any:
    from torchstyle.experiments.search import positive
    from torchstyle.experiments.study import resolve_url
    from torchstyle.experiments.workers import Workers

    if args.max_retries < 0:
        raise UserError(f"--max-retries must be 0 or more, got {args.max_retries}")
    for flag, value in (("--heartbeat", args.heartbeat), ("--grace-period", args.grace_period)):
        if not value > 0:
            raise UserError(f"{flag} must be a positive number of seconds, got {value}")
    if args.grace_period <= args.heartbeat:
        raise UserError(
            f"--grace-period {args.grace_period} must be longer than --heartbeat {args.heartbeat}"
        )
    return Workers(
        storage=resolve_url(args.storage) if args.storage else None,
        study=study,
        max_retries=args.max_retries,
        heartbeat=args.heartbeat,
        grace=args.grace_period,
        nproc=positive(args.nproc_per_trial, "--nproc-per-trial"),
        launcher=args.launcher,
    )


def _default_dir(args: argparse.Namespace, study: str) -> Path:
    import socket

    if args.dir:
        return Path(args.dir)
    if args.storage:  # a shared study: each host keeps its trials in its own root
        return Path("sweeps") / study / socket.gethostname()
    return Path("sweeps") / Path(args.config).stem


def run_sweep(args: argparse.Namespace) -> CommandOutput:
    """Runs or continues a sweep (one worker); prints the trials and the best trial's command."""
    from torchstyle.config import load_config_file
    from torchstyle.experiments.search import parse_spec, positive
    from torchstyle.experiments.study import mask
    from torchstyle.experiments.sweep import Sweep

    if args.status:
        return CommandOutput(stdout=study_status(args))
    if not args.config:
        raise UserError("torchstyle sweep needs --config sweep.toml (or --status with --storage)")
    spec = parse_spec(load_config_file(args.config), args.config)
    trials = positive(args.trials, "--trials") if args.trials is not None else spec.trials
    jobs = positive(args.jobs, "--jobs") if args.jobs is not None else spec.jobs
    study = args.study or spec.study or Path(args.config).stem
    sweep_dir = _default_dir(args, study)
    if not (args.study or spec.study):  # a folder started under another name keeps it
        study = _saved_study(sweep_dir) or study
    workers = _workers(args, study)
    launcher_check(workers)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    sweep = Sweep(spec=spec, sweep_dir=sweep_dir, trials=trials, jobs=jobs, workers=workers)
    result = sweep.run()
    text = format_sweep(result)
    if result.interrupted:
        again = ["torchstyle", "sweep", "--config", args.config, "--dir", str(sweep_dir)]
        if args.storage:  # masked: the password comes from the environment again
            again += ["--storage", mask(args.storage), "--study", study]
        again += ["--trials", str(trials), "--jobs", str(jobs)]
        if args.nproc_per_trial > 1:
            again += ["--nproc-per-trial", str(args.nproc_per_trial)]
        if args.launcher:
            again += ["--launcher", args.launcher]
        command = shlex.join(again)
        return CommandOutput(
            code=130,
            stdout=text,
            stderr=f"torchstyle sweep: interrupted; continue with: {command}\n",
        )
    return CommandOutput(stdout=text)


def _saved_study(sweep_dir: Path) -> str | None:
    import json

    from torchstyle.experiments.trial import SPEC_FILE

    try:
        saved = json.loads((sweep_dir / SPEC_FILE).read_text())
    except (OSError, ValueError):
        return None
    name = saved.get("study") if isinstance(saved, dict) else None
    return name if isinstance(name, str) else None


def launcher_check(workers: Any) -> None:
    """Refuses a bad ``--launcher`` template before anything starts."""
    from torchstyle.experiments.workers import launcher_command

    launcher_command(workers, ["--lr", "0.1"])


def study_status(args: argparse.Namespace) -> str:
    """The table of every trial of a study, read from its storage (any machine can ask)."""
    import optuna

    from torchstyle.config import load_config_file
    from torchstyle.experiments.search import SweepSpec, parse_spec
    from torchstyle.experiments.study import SEARCH_ATTR, mask, open_storage, resolve_url
    from torchstyle.experiments.sweep import SweepResult
    from torchstyle.experiments.trial import require_optuna

    require_optuna()
    spec = parse_spec(load_config_file(args.config), args.config) if args.config else None
    if args.storage:
        url = resolve_url(args.storage)
    else:
        if not (args.dir or args.config):
            raise UserError("--status needs --storage URL (or the sweep's --config or --dir)")
        study = args.study or (spec and spec.study) or Path(args.config or "sweep").stem
        url = resolve_url(f"sqlite:///{_default_dir(args, study) / 'study.db'}")
        if not Path(url.split(":///", 1)[1]).is_file():
            raise UserError(f"no study at {mask(url)}; pass --storage URL (or the sweep's --dir)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = open_storage(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
    name = args.study or (spec.study or Path(args.config).stem if spec else None)
    if name is None and len(names) == 1:
        name = names[0]
    if name not in names:
        raise UserError(
            f"no study {name!r} in {mask(url)}; pass --study, one of: {', '.join(names) or 'none'}"
        )
    study = optuna.load_study(study_name=name, storage=store)
    if spec is None:
        spec = SweepSpec(**{**study.user_attrs.get(SEARCH_ATTR, {"space": {}})})
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    best = study.best_trial if done else None
    return format_sweep(SweepResult(Path("."), spec, trials, best), status=True)


def format_sweep(result: Any, *, status: bool = False) -> str:
    """The table of trials, then the best trial's value, run folder and full command line."""
    from torchstyle.experiments.search import command_line
    from torchstyle.experiments.study import REASON, RETRY_OF_USER, SURPLUS, superseded

    spec = result.spec
    rows = [("trial", "state", spec.metric, "params", "host", "run folder", "note")]
    for t in sorted(result.trials, key=lambda t: t.number):
        if t.system_attrs.get(SURPLUS):
            continue
        value = "-" if t.value is None else f"{t.value:.4f}"
        if t.state.name == "PRUNED" and t.intermediate_values:
            last = max(t.intermediate_values)
            value = f"({t.intermediate_values[last]:.4f} @{last})"
        params = " ".join(f"{k}={_short(v)}" for k, v in t.params.items())
        state = "lost" if superseded(t) else t.state.name.lower()
        note = t.system_attrs.get(REASON, "") if t.state.name == "FAIL" else ""
        if RETRY_OF_USER in t.user_attrs:
            note = f"retry of {t.user_attrs[RETRY_OF_USER]}"
        host = t.user_attrs.get("host", "-")
        rows.append(
            (str(t.number), state, value, params, host, t.user_attrs.get("run_dir", "-"), note)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    counted: dict[str, int] = {}
    for t in result.trials:
        if not t.system_attrs.get(SURPLUS):
            key = "lost" if superseded(t) else t.state.name.lower()
            counted[key] = counted.get(key, 0) + 1
    lines.append("trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counted.items())))
    if result.resumed:
        lines.append(f"resumed after a stop: trial(s) {', '.join(map(str, result.resumed))}")
    best = result.best
    if best is None:
        lines.append("best: none yet (no trial completed)")
    else:
        lines.append(f"best: trial {best.number}, {spec.metric} {best.value:.4f}")
        lines.append(f"best run folder: {best.user_attrs.get('run_dir', '-')}")
        lines.append(f"best command:    {command_line(spec, best.params)}")
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
