"""Start-up cost of torchstyle commands against importing torch and torchvision.

Measured side by side, interleaved (a, b, c, a, b, c, ...) so that drifts in machine load
hit each alike:
  (a) ``python -c "import torch, torchvision"``: the floor any PyTorch tool pays;
  (b) ``torchstyle test RUN`` on the demo run (the classifier on the digits), start to exit;
  (c) ``torchstyle train`` (the demo's command) from start to its first optimizer step:
      the child process reports the moment the first training step begins, then exits.
The script prints the median seconds of each and the ratios b/a and c/a (the goal: at most
1.5 each).

Usage: python bench/startup.py [--repeat 5] [--run RUN]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# Starts `torchstyle train` and ends the process when the first training step begins.
FIRST_STEP = """
import os, sys, time
from torchstyle.models.base import ImageClassifier

def first_step(self, *args, **kwargs):
    print(f"FIRST_STEP {time.time()!r}", flush=True)
    os._exit(0)

ImageClassifier.training_step = first_step
from torchstyle.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _timed(cmd: list[str], cwd: Path) -> float:
    start = time.time()
    done = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return time.time() - start


def _until_first_step(cwd: Path, run_dir: Path) -> float:
    args = ["train", "--model", "classifier", "--data", "digits", "--epochs", "8"]
    args += ["--run-dir", str(run_dir), "--overwrite"]
    start = time.time()
    done = subprocess.run(
        [PYTHON, "-c", FIRST_STEP, *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    stamp = [line for line in done.stdout.splitlines() if line.startswith("FIRST_STEP ")]
    if not stamp:
        raise SystemExit(f"train never reached its first step:\n{done.stderr[-2000:]}")
    return float(stamp[0].split()[1]) - start


def _demo_run(cwd: Path) -> Path:
    run = cwd / "demo"
    cmd = [PYTHON, "-m", "torchstyle", "train", "--model", "classifier", "--data", "digits"]
    cmd += ["--epochs", "1", "--max-steps", "2", "--run-dir", str(run)]
    _timed(cmd, cwd)
    return run


def main() -> None:
    """Measures and prints the medians and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="rounds (default: 5)")
    parser.add_argument("--run", help="the run `test` opens (default: a 2-step demo run)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        run = Path(args.run).resolve() if args.run else _demo_run(cwd)
        times: dict[str, list[float]] = {"import": [], "test": [], "train": []}
        for _ in range(args.repeat):
            times["import"].append(_timed([PYTHON, "-c", "import torch, torchvision"], cwd))
            times["test"].append(_timed([PYTHON, "-m", "torchstyle", "test", str(run)], cwd))
            times["train"].append(_until_first_step(cwd, cwd / "first-step"))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"median of {args.repeat} rounds, interleaved, on {os.cpu_count()} CPUs")
    print(f"  import torch, torchvision         {med['import']:6.2f} s")
    print(f"  torchstyle test RUN               {med['test']:6.2f} s")
    print(f"  torchstyle train to first step    {med['train']:6.2f} s")
    print(f"ratio test / import:  {med['test'] / med['import']:.2f}  (goal <= 1.5)")
    print(f"ratio train / import: {med['train'] / med['import']:.2f}  (goal <= 1.5)")


if __name__ == "__main__":
    main()
