"""Does the default small ``gpt`` learn Python? Its validation loss on ``stdlib`` after a few
minutes on the CPU, against a unigram model's (byte frequencies only).

Trains ``torchstyle train --model gpt --data stdlib`` through the real CLI for ``--minutes`` of
wall-clock time, stops it with SIGTERM (the run saves where it is), evaluates the checkpoint on
the validation split, scores a unigram model (byte frequencies of the training split) on the same
windows, and prints both losses in nats and bits per byte, the steps taken, the CPU time used,
the test-split loss from ``torchstyle test``, and a sample continuing ``def ``.

Usage: python bench/gpt_stdlib.py [--minutes 4] [--threads 2] [--run-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "torchstyle", *args]


def validation_losses(run: Path) -> tuple[float, float]:
    """The run's latest model's and a unigram model's loss on the validation windows."""
    import torch

    from torchstyle.data import DataOptions, EpochBatchSampler, build_data, make_loader
    from torchstyle.data.stdlib import unigram_loss
    from torchstyle.engine.evaluation import evaluate, load_run_model

    model, state = load_run_model(run / "checkpoints" / "latest.pt", torch.device("cpu"))
    options = DataOptions(name="stdlib", image_size=state["spec"]["image_size"], layout="tokens")
    bundle = build_data(options)
    sampler = EpochBatchSampler(len(bundle.val), batch_size=64, shuffle=False)
    metrics = evaluate(model, make_loader(bundle.val, sampler), torch.device("cpu"))
    return metrics["loss"], unigram_loss(bundle.train.data, bundle.val.targets())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run-dir", help="keep the run here (default: a temporary folder)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads)}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run_dir or Path(tmp) / "gpt")
        train = ["train", "--model", "gpt", "--data", "stdlib", "--no-progress"]
        train += ["--log-every", "25", "--eval-every", "0", "--run-dir", str(run)]
        proc = subprocess.Popen(cli(*train), env=env)
        deadline = time.monotonic() + args.minutes * 60
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # saves at the next step, then exits
        proc.wait()
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
        test = subprocess.run(
            cli("test", str(run), "--checkpoint", "latest", "--json"),
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        test_loss = json.loads(test.stdout)["loss"]
        sample = subprocess.run(
            cli("predict", str(run), "--checkpoint", "latest", "--prompt", "def ", "--seed", "0"),
            env=env,
            capture_output=True,
            text=True,
        )  # fmt: skip
        steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").open()]
        loss, base = validation_losses(run)
        print(f"trained {args.minutes:g} min wall, {cpu:.0f} s CPU, {max(steps)} steps")
        print(f"gpt     validation loss {loss:.4f} nats/byte  {loss / math.log(2):.4f} bits/byte")
        print(f"unigram validation loss {base:.4f} nats/byte  {base / math.log(2):.4f} bits/byte")
        print(f"gpt     test loss       {test_loss:.4f} nats/byte (torchstyle test)")
        print("sample:", sample.stdout if sample.returncode == 0 else sample.stderr)


if __name__ == "__main__":
    main()
