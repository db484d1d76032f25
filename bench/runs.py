"""``torchstyle runs`` over 1,000 generated run folders: the time it takes.

Each folder holds what a real run leaves behind for ``runs`` to read: ``config.json``,
``status.json`` (finished, interrupted, failed, NaN, and running ones held by this very
process, so their liveness check runs) and a ``metrics.jsonl`` that ``runs`` must not read.
Prints the median of in-process listing times and the wall time of the whole CLI command.

Usage: python bench/runs.py [--runs 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from torchstyle.config import TrainConfig
from torchstyle.experiments.runs import format_table, list_runs
from torchstyle.experiments.status import write_status

STATES = ("finished", "finished", "finished", "interrupted", "failed", "nan", "running")


def make_runs(root: Path, n: int, seed: int = 0) -> None:
    """Writes ``n`` run folders under ``root`` with varied flags and states."""
    rng = random.Random(seed)
    base = TrainConfig(model="mlp", data="digits").to_dict()
    for i in range(n):
        run = root / f"run-{i:04d}"
        run.mkdir(parents=True)
        config = {
            **base,
            "lr": rng.choice([1e-3, 3e-3, 1e-2]),
            "batch_size": rng.choice([32, 64, 128]),
        }
        config["seed"] = i % 5
        (run / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        state = STATES[i % len(STATES)]
        steps = rng.randrange(100, 5000)
        value = rng.random()
        write_status(
            run,
            {
                "version": 1,
                "state": state,
                "pid": os.getpid(),
                "host": os.uname().nodename,
                "proc_start": None,
                "started_at": 1.7e9 + i,
                "updated_at": 1.7e9 + i + 60,
                "wall_time": rng.uniform(10, 1000),
                "step": steps,
                "epoch": steps // 100,
                "samples_per_sec": rng.uniform(1e3, 1e5),
                "best": {"metric": "val/accuracy", "value": value, "epoch": 3},
                "test": {"accuracy": value - 0.01, "loss": 0.5},
                "stop_reason": None,
                "error": "RuntimeError: CUDA out of memory" if state == "failed" else None,
            },
        )
        with (run / "metrics.jsonl").open("w") as f:
            for step in range(50, steps, 50):
                f.write(json.dumps({"step": step, "train/loss": 1.0 / step}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        make_runs(root, args.runs)
        times, rows = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            rows = list_runs([str(root)], sort="-best")
            format_table(rows)
            times.append(time.perf_counter() - start)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        cli = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "torchstyle", "runs", str(root)],
                env=env, check=True, capture_output=True,
            )  # fmt: skip
            cli.append(time.perf_counter() - start)
    print(f"runs listed: {len(rows)}")
    print(
        f"list + table in process: median {statistics.median(times) * 1000:.0f} ms (of {args.repeat})"
    )
    print(
        f"`torchstyle runs` command, wall: median {statistics.median(cli) * 1000:.0f} ms (of {args.repeat})"
    )


if __name__ == "__main__":
    main()
