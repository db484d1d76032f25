"""The same 12-trial search on digits with and without pruning: wall time and best accuracy.

With ``--workers 1,2``: the wall time to end 12 trials in one PostgreSQL study (a throw-away
server started from the machine's binaries, as the tests do) with one worker, then with two
``torchstyle sweep`` commands at once on the same study, and the ratio. Each worker runs one
single-threaded trial at a time, so two workers need two free cores to gain: on a 2-core machine
that also runs the workers themselves (and the trials' start-up, mostly importing torch), expect
well under 2x.

Both sweeps search the learning rate (log scale), the batch size and the weight decay of the
small convolutional classifier on digits for a fixed number of epochs, with the same sampler seed, as ``torchstyle sweep``
subprocesses. One prunes with the median pruner on the per-epoch validation accuracy; the
other runs every trial to the end. Prints each one's wall time, trials pruned and best
validation accuracy, and the wall-time ratio.

Usage: python bench/sweep.py [--trials 12] [--jobs 2] [--epochs 6]
       python bench/sweep.py --workers 1,2 [--trials 12] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SWEEP = """
seed = 0
metric = "accuracy"

[fixed]
model = "classifier"
data = "digits"
epochs = {epochs}
model_args = {{width = 16}}

[pruner]
type = "{pruner}"
startup_trials = 3
warmup_epochs = 1

[space]
lr = {{type = "float", low = 1e-4, high = 3e-2, log = true}}
batch_size = {{type = "categorical", choices = [32, 64, 128]}}
weight_decay = {{type = "float", low = 0.0, high = 0.05}}
"""


def run_sweep(root: Path, pruner: str, args: argparse.Namespace) -> dict:
    """Runs one sweep; returns its wall time, best value and trial states."""
    import optuna

    config = root / f"{pruner}.toml"
    config.write_text(SWEEP.format(epochs=args.epochs, pruner=pruner))
    sweep_dir = root / pruner
    cmd = [sys.executable, "-m", "torchstyle", "sweep", "--config", str(config)]
    cmd += ["--dir", str(sweep_dir), "--trials", str(args.trials), "--jobs", str(args.jobs)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=pruner, storage=f"sqlite:///{sweep_dir / 'study.db'}")
    states = [t.state.name for t in study.trials]
    best_dir = Path(study.best_trial.user_attrs["run_dir"])
    metric = json.loads((best_dir / "sweep_trial.json").read_text())["metric"]
    return {
        "metric": metric,
        "wall": wall,
        "best": study.best_value,
        "pruned": states.count("PRUNED"),
        "complete": states.count("COMPLETE"),
        "epochs": sum(len(t.intermediate_values) for t in study.trials),
    }


def run_workers(root: Path, url: str, password: str, n: int, args: argparse.Namespace) -> float:
    """Starts ``n`` workers of one new study at once; the wall time until all have exited."""
    config = root / f"w{n}.toml"
    config.write_text(SWEEP.format(epochs=args.epochs, pruner="none"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env["TORCHSTYLE_STORAGE_PASSWORD"] = password
    cmd = [sys.executable, "-m", "torchstyle", "sweep", "--config", str(config)]
    cmd += ["--storage", url, "--trials", str(args.trials), "--jobs", "1"]
    start = time.perf_counter()
    procs = [
        subprocess.Popen([*cmd, "--dir", str(root / f"w{n}-{i}")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for i in range(n)
    ]  # fmt: skip
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(err.decode())
    return time.perf_counter() - start


def bench_workers(args: argparse.Namespace) -> None:
    """Wall time to end ``--trials`` trials with each worker count, against one PostgreSQL."""
    sys.path.insert(0, str(REPO))
    from tests.experiments import postgres

    if postgres.missing():
        raise SystemExit(f"bench/sweep.py --workers: {postgres.missing()}")
    counts = [int(n) for n in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp, postgres.server() as server:
        walls = {n: run_workers(Path(tmp), server.url, server.password, n, args) for n in counts}
    print(
        f"{args.trials} trials, {args.epochs} epochs each, classifier on digits, PostgreSQL study"
    )
    print(f"cores: {os.cpu_count()}  workers  wall (s)  speed-up vs {counts[0]}")
    for n, wall in walls.items():
        print(f"{'':8}{n:8d}  {wall:8.1f}  {walls[counts[0]] / wall:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--workers", metavar="N,M", help="compare worker counts on PostgreSQL")
    args = parser.parse_args()
    if args.workers:
        args.epochs = args.epochs or 1
        bench_workers(args)
        return
    args.epochs = args.epochs or 6
    with tempfile.TemporaryDirectory() as tmp:
        results = {p: run_sweep(Path(tmp), p, args) for p in ("none", "median")}
    print(
        f"{args.trials} trials, {args.jobs} jobs, {args.epochs} epochs each, classifier on digits"
    )
    metric = results["none"]["metric"]  # val/accuracy; test/accuracy where data has no val split
    print(f"pruner  wall (s)  complete  pruned  epochs trained  best {metric}")
    for name, r in results.items():
        print(
            f"{name:<7} {r['wall']:8.1f}  {r['complete']:8d}  {r['pruned']:6d}  "
            f"{r['epochs']:14d}  {r['best']:.4f}"
        )
    print(
        f"wall-time ratio (median / none): {results['median']['wall'] / results['none']['wall']:.2f}"
    )


if __name__ == "__main__":
    main()
