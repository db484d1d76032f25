"""CLI glue for ``torchstyle runs`` and ``torchstyle sweep``: parse, call the library, format.

``torchstyle.cli`` finds ``add_runs_arguments``/``run_runs`` and
``add_sweep_arguments``/``run_sweep`` here by name, like every subcommand's.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from torchstyle import extras
from torchstyle.errors import UserError
from torchstyle.output import CommandOutput


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
        "mid-way are resumed from their checkpoints. See docs/experiments.md for sweep.toml."
    )
    parser.add_argument(
        "--config", required=True, metavar="FILE", help="sweep config (TOML or JSON)"
    )
    parser.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help="trials to end in total (default: the config's, else 10)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        metavar="J",
        help="trials in parallel processes (default: the config's, else 1)",
    )
    parser.add_argument("--dir", metavar="DIR", help="sweep folder (default: sweeps/CONFIG-NAME)")


def run_sweep(args: argparse.Namespace) -> CommandOutput:
    """Runs or continues a sweep; prints the trials and the best trial's command line."""
    from torchstyle.config import load_config_file
    from torchstyle.experiments.sweep import Sweep, _positive, parse_spec

    spec = parse_spec(load_config_file(args.config), args.config)
    trials = _positive(args.trials, "--trials") if args.trials is not None else spec.trials
    jobs = _positive(args.jobs, "--jobs") if args.jobs is not None else spec.jobs
    sweep_dir = Path(args.dir) if args.dir else Path("sweeps") / Path(args.config).stem
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    result = Sweep(spec=spec, sweep_dir=sweep_dir, trials=trials, jobs=jobs).run()
    text = format_sweep(result)
    if result.interrupted:
        again = ["torchstyle", "sweep", "--config", args.config, "--dir", str(sweep_dir)]
        again += ["--trials", str(trials), "--jobs", str(jobs)]
        command = shlex.join(again)
        return CommandOutput(
            code=130,
            stdout=text,
            stderr=f"torchstyle sweep: interrupted; continue with: {command}\n",
        )
    return CommandOutput(stdout=text)


def format_sweep(result: Any) -> str:
    """The table of trials, then the best trial's value, run folder and full command line."""
    from torchstyle.experiments.sweep import command_line

    spec = result.spec
    rows = [("trial", "state", spec.metric, "params", "run folder")]
    for t in sorted(result.trials, key=lambda t: t.number):
        value = "-" if t.value is None else f"{t.value:.4f}"
        if t.state.name == "PRUNED" and t.intermediate_values:
            last = max(t.intermediate_values)
            value = f"({t.intermediate_values[last]:.4f} @{last})"
        params = " ".join(f"{k}={_short(v)}" for k, v in t.params.items())
        rows.append(
            (str(t.number), t.state.name.lower(), value, params, t.user_attrs.get("run_dir", "-"))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    counts: dict[str, int] = {}
    for t in result.trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    lines.append("trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
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
