"""Do the multi-device wrappers cost anything? samples/s of single vs dp vs ddp vs fsdp.

Trains the classifier (CIFAR-shaped synthetic data), pix2pix (a paired folder this script
writes) and gpt (bytes of the standard library) for a fixed number of steps under
``--strategy single``, ``dp`` (DataParallel, CUDA only), ``ddp`` and ``fsdp`` (torchrun with
``--nproc`` processes, default 1), each through the real CLI, interleaved, and prints the
samples/s each run logged (the engine's own figure, after a warm-up window), its ratio to
``single``, and for gpt the tokens/s (samples/s times the context length).

Usage: python bench/strategies.py [--steps 200] [--repeats 2] [--nproc 1] [--jobs gpt ...]
On a machine without CUDA, dp is skipped and the figures only show the script works.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
GPT_CONTEXT = 64  # gpt's default context: one sample is this many tokens


def write_pairs(root: Path, n: int = 256, size: int = 64) -> Path:
    """A pix2pix folder: A|B pairs side by side, B = A inverted."""
    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("test", n // 8)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            a = (
                rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
                .repeat(8, 0)
                .repeat(8, 1)
            )
            Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(
                root / split / f"{i:04d}.png"
            )
    return root


def rate(run_dir: Path) -> float:
    """Median samples/s the run logged, its first window (warm-up) dropped."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["train/samples_per_sec"] for r in rows if "train/samples_per_sec" in r]
    return statistics.median(rates[1:] or rates)


def train(strategy: str, args: list[str], run_dir: Path, nproc: int = 1) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cli = [
        "-m",
        "torchstyle",
        "train",
        *args,
        "--strategy",
        strategy,
        "--run-dir",
        str(run_dir),
        "--no-progress",
    ]
    if strategy in ("ddp", "fsdp"):
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            *cli,
        ]
    else:
        cmd = [sys.executable, *cli]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{strategy} failed:\n{proc.stderr[-3000:]}")
    return rate(run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--nproc", type=int, default=1, help="processes under ddp and fsdp")
    parser.add_argument("--jobs", nargs="+", default=["classifier", "pix2pix", "gpt"])
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    strategies = ["single", "dp", "ddp", "fsdp"] if cuda else ["single", "ddp", "fsdp"]
    common = [
        "--max-steps",
        str(args.steps),
        "--log-every",
        "20",
        "--epochs",
        "100",
        "--eval-every",
        "0",
    ]
    if cuda:
        common += ["--amp", "bf16", "--channels-last"]
    with tempfile.TemporaryDirectory() as tmp:
        pairs = write_pairs(Path(tmp) / "pairs")
        jobs = {
            "classifier": [
                "--model",
                "classifier",
                "--data",
                "synthetic",
                "--batch-size",
                "256",
                "--model-arg",
                "width=64",
                *common,
            ],
            "pix2pix": [
                "--model",
                "pix2pix",
                "--data",
                str(pairs),
                "--image-size",
                "64",
                "--batch-size",
                "16",
                *common,
            ],
            "gpt": [
                "--model",
                "gpt",
                "--data",
                "stdlib",
                "--batch-size",
                "32",
                *common,
            ],
        }
        jobs = {name: jobs[name] for name in args.jobs}
        print(f"device: {torch.cuda.get_device_name() if cuda else 'cpu (dp needs CUDA: skipped)'}")
        for name, job in jobs.items():
            results: dict[str, list[float]] = {s: [] for s in strategies}
            for r in range(args.repeats):
                for s in strategies:
                    run_dir = Path(tmp) / f"{name}-{s}-{r}"
                    results[s].append(train(s, job, run_dir, args.nproc))
            base = max(results["single"])
            for s in strategies:
                best = max(results[s])
                tokens = f"   {best * GPT_CONTEXT:10.0f} tokens/s" if name == "gpt" else ""
                print(
                    f"{name:10s} {s:6s} {best:10.1f} samples/s   {best / base:.3f} of single{tokens}"
                )


if __name__ == "__main__":
    main()
