"""How fast `torchstyle lint` checks a large codebase, in lines per second on one core.

Usage:
    python bench/lint_speed.py                 # generates a ~150k-line PyTorch codebase
    python bench/lint_speed.py path/to/code    # any folder (e.g. a model library)
    python bench/lint_speed.py --lines 500000 --repeat 5 --select ALL
    python bench/lint_speed.py --jobs 2        # also: N worker processes against one (wall clock)
    python bench/lint_speed.py --startup       # `torchstyle lint ONE_FILE` against `python -c pass`
    python bench/lint_speed.py --cache         # a second run over an unchanged tree (the cache)

The speed ratio it prints is the linter's CPU time over the CPU time of ``ast.parse`` plus a
full ``ast.walk`` of the same files (already read and decoded): what any AST-based tool must
spend at least. The linter's target is a ratio of at most 2.0.

The figure covers everything the CLI does per file (find, read, decode, parse, walk every
rule, noqa), in one process on one core; printing the findings is left out. Lines per second
come from the process's CPU time, which other processes on a busy machine do not inflate; the
wall-clock figures are printed too. The generated
code is PyTorch code in the guide's style (layers, networks, losses, datasets, training
scripts), with some of the guide's don'ts, so that the rules have work to do.
"""

from __future__ import annotations

import argparse
import ast
import gc
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from torchstyle.lint import files, registry, saves, semantic
from torchstyle.lint.config import ConfigFinder
from torchstyle.lint.jobs import Options, check_files
from torchstyle.lint.runner import Linter, decode_source

_HEADER = '''"""Generated module {i}: {kind}."""

import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
'''

_LAYER = '''

class ConvBlock{i}_{j}(nn.Module):
    """Conv, norm, activation ({j})."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        block = [nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)]
        block += [nn.BatchNorm2d(out_channels)]
        block += [nn.ReLU(inplace=True)]
        self.block = nn.Sequential(*block)
        self.scale = math.sqrt(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)  # (B, C, H, W)
        if out.shape[1] == x.shape[1]:
            out = out + x
        return out / self.scale


class ResnetBlock{i}_{j}(nn.Module):
    def __init__(self, dim: int, use_dropout: bool = False) -> None:
        super().__init__()
        layers = [nn.Conv2d(dim, dim, 3, padding=1), nn.BatchNorm2d(dim), nn.ReLU(True)]
        if use_dropout:
            layers += [nn.Dropout(0.5)]
        layers += [nn.Conv2d(dim, dim, 3, padding=1), nn.BatchNorm2d(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        features = self.conv_block(x)
        weights = np.sqrt(features.shape[1])
        return x + features / weights


class Attention{i}_{j}(nn.Module):
    def __init__(self, dim: int, heads: int = 8) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads)  # (B, N, 3, H, D)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, c)
        if self.training:
            out = F.dropout(out, 0.1)
        stats = {{"mean": out.mean(), "std": out.std()}}
        return self.proj(out), stats
'''

_NETWORK = """

class Network{i}_{j}(nn.Module):
    def __init__(self, num_blocks: int = 6, channels: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        layers = [ConvBlock{i}_0(3, channels)]
        for _ in range(num_blocks):
            layers += [ResnetBlock{i}_0(channels, use_dropout=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1.0)
                m.bias.data.zero_()

    def forward(self, x):
        x = self.features(x)
        x = self.pool(x).flatten(1)  # (B, C)
        logits = self.head(x)
        return logits

    def predict(self, x):
        with torch.no_grad():
            return self.forward(x).argmax(dim=1)


class PerceptualLoss{i}_{j}(nn.Module):
    def __init__(self, weights=(1.0, 0.5, 0.25)) -> None:
        super().__init__()
        self.weights = weights
        self.criterion = nn.L1Loss()

    def forward(self, outputs, targets):
        loss = 0.0
        for w, a, b in zip(self.weights, outputs, targets):
            loss = loss + w * self.criterion(a, b.detach())
        return loss
"""

_DATASET = """

class Folder{i}(Dataset):
    def __init__(self, root: str, transform=None) -> None:
        self.root = root
        self.transform = transform
        self.samples = sorted(
            (os.path.join(root, c, f), k)
            for k, c in enumerate(sorted(os.listdir(root)))
            for f in os.listdir(os.path.join(root, c))
        )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        with open(path, "rb") as f:
            image = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
        if self.transform is not None:
            image = self.transform(image)
        return image, label
"""

_TRAIN = """

def train_one_epoch_{i}(model, loader, criterion, optimizer, device, epoch, log_every=50):
    model.train()
    running = torch.zeros((), device=device)
    for step, (images, labels) in enumerate(loader):
        images, labels = images.to(device), labels.to(device)
        outputs = model(images)
        loss = criterion(outputs, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running += loss
        if step % log_every == 0:
            print(f"epoch {{epoch}} step {{step}} loss {{loss.item():.4f}}")
    return running.item() / max(len(loader), 1)


def evaluate_{i}(model, loader, device):
    model.eval()
    correct = total = 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        predictions = model(images).argmax(dim=1)
        correct += (predictions == labels).sum().item()
        total += labels.numel()
    return correct / max(total, 1)


def main_{i}(argv=None):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = Network{i}_0().to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_loader = DataLoader(Folder{i}("data/train"), batch_size=64, shuffle=True)
    val_loader = DataLoader(Folder{i}("data/val"), batch_size=64)
    best = 0.0
    for epoch in range(10):
        train_one_epoch_{i}(model, train_loader, criterion, optimizer, device, epoch)
        accuracy = evaluate_{i}(model, val_loader, device)
        if accuracy > best:
            best = accuracy
            torch.save({{"net": model.state_dict(), "epoch": epoch + 1}}, "best.pt")
        state = torch.load("best.pt", map_location="cpu")
        model.load_state_dict(state["net"])
    return best
"""


def generate(folder: str, target_lines: int) -> int:
    """Writes PyTorch modules into ``folder`` until about ``target_lines`` lines; returns lines."""
    written = 0
    i = 0
    while written < target_lines:
        kind = ("layers", "networks", "training")[i % 3]
        parts = [_HEADER.format(i=i, kind=kind)]
        parts += [_LAYER.format(i=i, j=j) for j in range(4)]
        parts += [_NETWORK.format(i=i, j=j) for j in range(2)]
        parts += [_DATASET.format(i=i), _TRAIN.format(i=i)]
        text = "".join(parts)
        sub = os.path.join(folder, f"pkg{i // 50}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"module_{i}.py"), "w", encoding="utf-8") as f:
            f.write(text)
        written += text.count("\n")
        i += 1
    return written


def forget_project_facts() -> None:
    """Empties the per-process caches of cross-file facts, as a fresh CLI run starts."""
    saves.forget()
    semantic._summarize.cache_clear()
    semantic.PROJECT.__init__()  # type: ignore[misc]


def lint_folder(paths: list[str], linter: Linter) -> tuple[int, int, int, float, float]:
    """Lints every file once; returns (files, lines, findings, wall seconds, CPU seconds).

    The cross-file facts (project summaries, what the project saves) are computed afresh,
    inside the timed region, as in a CLI run.
    """
    patterns = files.compile_patterns(files.DEFAULT_EXCLUDES, os.sep)
    start, cpu_start = time.perf_counter(), time.process_time()
    forget_project_facts()
    n_files = n_lines = n_findings = 0
    for path in paths:
        for file in files.iter_python_files(path, patterns):
            with open(file, "rb") as f:
                data = f.read()
            try:
                text = decode_source(data).text
            except (UnicodeDecodeError, SyntaxError, LookupError):
                continue
            n_findings += len(linter.lint(text, file))
            n_files += 1
            n_lines += text.count("\n") + 1
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return n_files, n_lines, n_findings, wall, cpu


def parse_and_walk(paths: list[str]) -> float:
    """CPU seconds of ``ast.parse`` plus a full ``ast.walk`` of every file (read beforehand)."""
    patterns = files.compile_patterns(files.DEFAULT_EXCLUDES, os.sep)
    texts = []
    for path in paths:
        for file in files.iter_python_files(path, patterns):
            with open(file, "rb") as f:
                data = f.read()
            try:
                texts.append((decode_source(data).text, file))
            except (UnicodeDecodeError, SyntaxError, LookupError):
                continue
    start = time.process_time()
    for text, file in texts:
        try:
            tree = ast.parse(text, file)
        except (SyntaxError, ValueError):
            continue
        for _ in ast.walk(tree):
            pass
    return time.process_time() - start


def lint_with_jobs(
    paths: list[str], select: list[str] | None, jobs: int
) -> tuple[int, float, float, float]:
    """Lints through the CLI's job machinery with ``jobs`` processes.

    Returns (findings, wall seconds, this process's CPU seconds, the workers' CPU seconds).
    """
    patterns = files.compile_patterns(files.DEFAULT_EXCLUDES, os.sep)
    items = [(f, None) for p in paths for f in files.iter_python_files(p, patterns)]
    options = Options(select=tuple(select) if select is not None else None)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    start, cpu = time.perf_counter(), time.process_time()
    found = sum(len(r.findings) for r in check_files(items, options, ConfigFinder(), jobs))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    return found, wall, cpu, workers


def compare_jobs(paths: list[str], select: list[str] | None, jobs: int, repeat: int) -> str:
    """One job against ``jobs`` jobs, alternating: wall clock, and CPU time per core.

    On a busy machine the wall clock mostly measures the other processes. The CPU figures do
    not: one job's CPU time against the busiest core's share of the run with ``jobs``
    workers (the workers' total split over ``jobs``, plus the parent's own CPU time) is the
    speed-up the same run gets on ``jobs`` idle cores, if the workers share the files evenly
    (the parent's work is counted as if it ran on top of a worker's: a pessimistic bound).
    """
    one, many = [], []
    for _ in range(max(repeat, 1)):
        one.append(lint_with_jobs(paths, select, 1))
        many.append(lint_with_jobs(paths, select, jobs))
    if one[0][0] != many[0][0]:
        raise RuntimeError(f"--jobs {jobs} found {many[0][0]} findings, one job {one[0][0]}")
    best_one, best_many = min(r[1] for r in one), min(r[1] for r in many)
    cpu_one = min(r[2] + r[3] for r in one)
    per_core = min(r[3] / jobs + r[2] for r in many)  # the parent's work counted on top
    total_many = min(r[2] + r[3] for r in many)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"--jobs {jobs} (best of {len(one)} each, alternating with one job; {os.cpu_count()} "
        f"cores; load average {load}):\n"
        f"  wall clock: {best_many:.3f} s against {best_one:.3f} s, {best_one / best_many:.2f}x\n"
        f"  CPU time: {total_many:.3f} s in all against {cpu_one:.3f} s for one job "
        f"(overhead {total_many / cpu_one - 1:+.1%}); busiest core {per_core:.3f} s: "
        f"{cpu_one / per_core:.2f}x on {jobs} idle cores\n"
    )


_SMALL = """\"\"\"A small training script.\"\"\"

import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def train(net: Net, loader, optimizer) -> None:
    net.train()
    for x, y in loader:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()


if __name__ == "__main__":
    train(Net(), [], None)
"""


def _wall(command: list[str], cwd: str) -> float:
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    # as installed: Python keeps compiled modules (.pyc) unless told not to
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def startup(repeat: int) -> str:
    """Median wall times of `python -c pass` and `torchstyle lint SMALL_FILE`, side by side."""
    lint = [sys.executable, "-m", "torchstyle", "lint", "small.py"]
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "torchstyle lint small.py": lint,
        "torchstyle lint --no-cache small.py": [*lint, "--no-cache"],
    }
    with tempfile.TemporaryDirectory(prefix="torchstyle-lint-startup-") as tmp:
        with open(os.path.join(tmp, "small.py"), "w", encoding="utf-8") as f:
            f.write(_SMALL)
        for command in commands.values():
            _wall(command, tmp)  # warm-up: the OS file cache, .pyc files, the lint cache
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeat):  # interleaved, so that a busy moment hits every command alike
            for name, command in commands.items():
                times[name].append(_wall(command, tmp))
    base = statistics.median(times["python -c pass"])
    lines = [
        f"median wall time of {repeat} interleaved runs ({_SMALL.count(chr(10))}-line file, "
        "compiled modules kept as an installed package has them):"
    ]
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(f"  {name:<38} {median * 1000:7.1f} ms  {median / base:5.2f}x python -c pass")
    return "\n".join(lines) + "\n"


def cache_speedup(lines: int) -> str:
    """Wall time of a first run (empty cache) and a second one over the unchanged tree."""
    with tempfile.TemporaryDirectory(prefix="torchstyle-lint-cache-") as tmp:
        tree = os.path.join(tmp, "code")
        os.mkdir(tree)
        generate(tree, lines)
        command = [sys.executable, "-m", "torchstyle", "lint", "--exit-zero", "code"]
        first = _wall(command, tmp)
        second = _wall(command, tmp)
        uncached = _wall([*command, "--no-cache"], tmp)
    return (
        f"torchstyle lint over {lines:,} generated lines: first run {first:.2f} s (fills the "
        f"cache), second run {second:.2f} s (unchanged tree): {first / second:.1f}x faster; "
        f"--no-cache {uncached:.2f} s\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints lines per second."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="folders to lint (default: a generated codebase)")
    parser.add_argument("--lines", type=int, default=150_000, help="size of the generated codebase")
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs (the best and median are shown)"
    )
    parser.add_argument(
        "--select", default=None, help="rule codes or prefixes (default: the default rules)"
    )
    parser.add_argument(
        "--jobs", type=int, default=0, help="also compare N worker processes with one (wall clock)"
    )
    parser.add_argument(
        "--startup",
        action="store_true",
        help="time `torchstyle lint ONE_SMALL_FILE` against `python -c pass` (median of --repeat, "
        "default 10)",
    )
    parser.add_argument(
        "--cache", action="store_true", help="time a first and a second run over the same tree"
    )
    args = parser.parse_args(argv)
    if args.startup:
        sys.stdout.write(startup(10 if args.repeat == 3 else max(args.repeat, 1)))
        return 0
    if args.cache:
        sys.stdout.write(cache_speedup(args.lines if args.lines != 150_000 else 30_000))
        return 0
    codes = (
        None
        if args.select is None
        else registry.expand(registry.split_codes(args.select), option="select")
    )
    linter = Linter(codes)
    with tempfile.TemporaryDirectory(prefix="torchstyle-lint-bench-") as tmp:
        paths = args.paths
        if not paths:
            generate(tmp, args.lines)
            paths = [tmp]
        lint_folder(paths, linter)  # warm-up: file cache, rule tables
        runs, baselines = [], []
        for _ in range(max(args.repeat, 1)):  # alternating, so both see the same machine
            runs.append(lint_folder(paths, linter))
            gc.collect()
            baselines.append(parse_and_walk(paths))
            gc.collect()
        select = sorted(codes) if codes is not None else None
        jobs = compare_jobs(paths, select, args.jobs, args.repeat) if args.jobs > 1 else ""
    n_files, n_lines, n_findings = runs[0][:3]
    cpu = min(r[4] for r in runs)
    baseline = min(baselines)
    wall, wall_median = min(r[3] for r in runs), statistics.median(r[3] for r in runs)
    where = ", ".join(args.paths) if args.paths else f"generated codebase ({args.lines:,} lines)"
    sys.stdout.write(
        f"linted {n_files:,} files, {n_lines:,} lines ({where}) with {len(linter.rules)} rules; "
        f"{n_findings:,} findings\n"
        f"{n_lines / cpu:,.0f} lines/s on one core (best of {len(runs)}: {cpu:.3f} s of CPU time; "
        f"Python {sys.version.split()[0]})\n"
        f"wall clock: best {n_lines / wall:,.0f} lines/s, median {n_lines / wall_median:,.0f} "
        "lines/s (lower when other processes compete for the core)\n"
        f"speed ratio: {cpu / baseline:.2f} (lint {cpu:.3f} s of CPU time against "
        f"{baseline:.3f} s for ast.parse + ast.walk of the same files; target <= 2.0)\n" + jobs
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
