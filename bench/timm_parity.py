"""torchstyle's training against timm's own ``train.py``: same images, model, recipe, epochs.

The benchmark makes an image folder (scikit-learn's digits, upscaled to 32 px RGB PNGs:
``train/`` and ``val/``), or takes ``--data FOLDER`` with those two folders. Each tool
trains the same timm model from random weights with the same recipe (AdamW, cosine schedule
after a linear warm-up, label smoothing, mixup/cutmix, ImageNet normalisation, no crop at
evaluation) for the same number of epochs, once per seed, one run after the other on the
same cores. timm's side runs ``train.py`` of a timm source checkout (``--timm-repo``; its
commit is printed); nothing of timm's is copied here. It prints, per tool: the final
epoch's validation accuracy (mean and standard deviation over the seeds), the wall time of
a whole run (process start to exit, mean over the seeds), and the time per optimizer step
(wall time over steps), then torchstyle's accuracy difference and wall-time ratio.

Get a checkout (any commit), for example:
    git clone https://github.com/huggingface/pytorch-image-models /tmp/timm

Usage: python bench/timm_parity.py --timm-repo /tmp/timm [--model resnet10t] [--epochs 3]
    [--per-class N]
    [--seeds 0 1 2] [--batch-size 64] [--data FOLDER] [--image-size 32] [--threads 2]
On a GPU: --device cuda --image-size 224 --data an ImageNet-like folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def make_digits_folder(root: Path, size: int, per_class: int | None = None) -> Path:
    """Digits as ``size`` px RGB PNGs: ``train/`` (80%, at most ``per_class`` images of each
    class) and ``val/`` (20%), class folders."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(digits.target))
    n_val = len(order) // 5
    kept: dict[int, int] = {}
    for rank, i in enumerate(order):
        split = "val" if rank < n_val else "train"
        label = int(digits.target[i])
        if split == "train":
            kept[label] = kept.get(label, 0) + 1
            if per_class is not None and kept[label] > per_class:
                continue
        folder = root / split / str(int(digits.target[i]))
        folder.mkdir(parents=True, exist_ok=True)
        gray = (digits.images[i] * (255.0 / 16.0)).astype(np.uint8)
        image = Image.fromarray(gray).resize((size, size), Image.BILINEAR).convert("RGB")
        image.save(folder / f"{i}.png")
    return root


def torchstyle_view(data: Path, where: Path) -> Path:
    """The folder as torchstyle reads it (links, no copies): ``train/``, ``val/``, and a
    ``test/`` that torchstyle requires, of one val image per class, so that its final test
    costs next to nothing (timm has no such pass)."""
    where.mkdir(parents=True)
    for name in ("train", "val"):
        (where / name).symlink_to((data / name).resolve(), target_is_directory=True)
    for cls in sorted(p for p in (data / "val").iterdir() if p.is_dir()):
        first = sorted(cls.iterdir())[0]
        (where / "test" / cls.name).mkdir(parents=True)
        (where / "test" / cls.name / first.name).symlink_to(first.resolve())
    return where


def count_images(folder: Path) -> int:
    """Image files under ``folder``."""
    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def timm_command(args: argparse.Namespace, data: Path, out: Path, seed: int) -> list[str]:
    """timm's ``train.py`` with the recipe."""
    size = str(args.image_size)
    return [
        sys.executable, "train.py", "--data-dir", str(data), "--train-split", "train",
        "--val-split", "val", "--model", args.model, "--num-classes", str(args.classes),
        "--input-size", "3", size, size, "--crop-pct", "1.0", "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size), "--opt", "adamw", "--lr", str(args.lr),
        "--weight-decay", "0.05", "--sched", "cosine", "--sched-on-updates",
        "--warmup-epochs", "1", "--warmup-lr", str(args.lr * 0.01), "--min-lr", "0",
        "--cooldown-epochs", "0", "--smoothing", "0.1", "--mixup", "0.2", "--cutmix", "1.0",
        "--mixup-switch-prob", "0.5", "--no-aug", "--workers", str(args.workers),
        "--seed", str(seed), "--device", args.device, "--output", str(out),
        "--experiment", "run", "--checkpoint-hist", "1", "--log-interval", "1000",
    ]  # fmt: skip


def torchstyle_command(args: argparse.Namespace, data: Path, out: Path, seed: int) -> list[str]:
    """``torchstyle train`` with the same recipe."""
    return [
        sys.executable, "-m", "torchstyle", "train", "--model", f"timm:{args.model}",
        "--data", str(data), "--image-size", str(args.image_size), "--epochs",
        str(args.epochs), "--batch-size", str(args.batch_size), "--optimizer", "adamw",
        "--lr", str(args.lr), "--weight-decay", "0.05", "--scheduler", "cosine",
        "--warmup-epochs", "1", "--label-smoothing", "0.1", "--mixup", "0.2", "--cutmix",
        "1.0", "--mix-switch-prob", "0.5", "--augment", "none", "--normalize", "imagenet",
        "--workers", str(args.workers), "--seed", str(seed), "--device", args.device,
        "--run-dir", str(out / "run"), "--no-progress", "--log-every", "1000",
        "--keep", "1", "--save-every-minutes", "0",
    ]  # fmt: skip


def timm_accuracy(out: Path) -> float:
    """The last epoch's validation top-1 of a timm run, as a fraction."""
    rows = list(csv.DictReader((out / "run" / "summary.csv").open()))
    return float(rows[-1]["eval_top1"]) / 100.0


def torchstyle_accuracy(out: Path) -> float:
    """The last validation accuracy of a torchstyle run."""
    lines = (out / "run" / "metrics.jsonl").read_text().splitlines()
    values = [json.loads(x)["val/accuracy"] for x in lines if '"val/accuracy"' in x]
    return float(values[-1])


def run_one(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Runs a training command; returns its wall time. Exits on failure with its output."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        sys.exit(f"{cmd[1:4]} failed with exit code {proc.returncode}")
    return wall


def git_commit(repo: Path) -> str:
    """The checkout's commit, or a note when it is not a git checkout."""
    proc = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return proc.stdout.strip() if proc.returncode == 0 else "unknown (not a git checkout)"


def parse_args() -> argparse.Namespace:
    """The benchmark's flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--timm-repo", type=Path, help="a pytorch-image-models source checkout")
    p.add_argument("--data", type=Path, help="image folder with train/ and val/ class folders")
    p.add_argument("--model", default="resnet10t", help="a timm model name")
    p.add_argument(
        "--per-class", type=int, help="digits: at most N training images per class (default: all)"
    )
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of every run")
    p.add_argument("--device", default="cpu")
    return p.parse_args()


def summarise(name: str, accs: list[float], walls: list[float], steps: int) -> dict[str, float]:
    """Prints one tool's row; returns its means."""
    acc = statistics.mean(accs)
    spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
    wall = statistics.mean(walls)
    print(
        f"{name:<11} {acc:.4f} +- {spread:.4f}   {wall:8.1f} s   {1000 * wall / steps:8.1f} ms"
        f"   ({', '.join(f'{a:.4f}' for a in accs)})"
    )
    return {"acc": acc, "spread": spread, "wall": wall}


def main() -> None:
    """Builds the data, runs both tools per seed, prints the table."""
    args = parse_args()
    if args.timm_repo is None or not (args.timm_repo / "train.py").is_file():
        sys.exit(
            "pass --timm-repo PATH, a pytorch-image-models checkout with train.py (git clone "
            "https://github.com/huggingface/pytorch-image-models /tmp/timm)"
        )
    with tempfile.TemporaryDirectory(prefix="timm-parity-") as tmp:
        work = Path(tmp)
        data = args.data or make_digits_folder(work / "data", args.image_size, args.per_class)
        ts_data = torchstyle_view(data, work / "torchstyle-data")
        args.classes = sum(1 for p in (data / "train").iterdir() if p.is_dir())
        n_train = count_images(data / "train")
        # timm drops a last partial batch, torchstyle trains on it: each its own step count.
        steps = {
            "timm": args.epochs * (n_train // args.batch_size),
            "torchstyle": args.epochs * math.ceil(n_train / args.batch_size),
        }
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
        env_timm = {k: v for k, v in env.items() if k != "PYTHONPATH"}
        results: dict[str, tuple[list[float], list[float]]] = {
            "timm": ([], []),
            "torchstyle": ([], []),
        }
        print(f"timm checkout: {args.timm_repo} at commit {git_commit(args.timm_repo)}")
        print(
            f"data: {data} ({n_train} train, {count_images(data / 'val')} val images, "
            f"{args.classes} classes, {args.image_size} px); model {args.model}; "
            f"{args.epochs} epochs, batch {args.batch_size}, seeds {args.seeds}"
        )
        for seed in args.seeds:
            for tool in ("torchstyle", "timm"):
                out = work / f"{tool}-{seed}"
                if tool == "timm":
                    wall = run_one(timm_command(args, data, out, seed), args.timm_repo, env_timm)
                    acc = timm_accuracy(out)
                else:
                    wall = run_one(torchstyle_command(args, ts_data, out, seed), REPO, env)
                    acc = torchstyle_accuracy(out)
                results[tool][0].append(acc)
                results[tool][1].append(wall)
                print(f"  seed {seed} {tool}: val accuracy {acc:.4f}, wall {wall:.1f} s")
        print(f"{'tool':<11} {'val accuracy':<18} {'wall time':>10}   {'per step':>11}")
        rows = {tool: summarise(tool, *results[tool], steps[tool]) for tool in results}
        ts, tm = rows["torchstyle"], rows["timm"]
        within = ts["acc"] >= tm["acc"] - max(tm["spread"], ts["spread"])
        print(
            f"torchstyle - timm accuracy: {ts['acc'] - tm['acc']:+.4f} "
            f"({'within the seeds spread or better' if within else 'below the seeds spread'}); "
            f"wall time ratio torchstyle / timm: {ts['wall'] / tm['wall']:.2f}x"
        )


if __name__ == "__main__":
    main()
