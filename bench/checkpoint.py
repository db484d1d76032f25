"""How long a checkpoint save stalls the training loop: background against synchronous writes.

A ResNet-18-sized model (torchvision's resnet18, 11.7M parameters, with SGD momentum state)
trains on small random images on the CPU. Every few steps a checkpoint of the model and the
optimizer is saved, either synchronously (``torch.save`` to a temporary file, fsync, rename:
the loop waits) or in the background (the state is copied to host memory, then written by a
thread while the loop goes on). The stall of a save is the time of the step that saves minus
the median plain step. The script prints the median stall of each and their ratio, how much
of it the save call itself took (a background save: the copy to host memory), and the mean
slowdown of the steps that run while a background write is in progress. The writer thread
needs a core of its own: on a machine whose cores are all busy it takes its time from the
training steps, and the stall is no smaller than a synchronous write's.

Usage: python bench/checkpoint.py [--saves 5] [--steps-between 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from torchstyle.engine.checkpoint import CheckpointManager


def make_model() -> torch.nn.Module:
    """ResNet-18 with 10 classes: the size of the checkpoint is what matters here."""
    from torchvision.models import resnet18

    return resnet18(num_classes=10)


def run(background: bool, args: argparse.Namespace, folder: Path) -> dict[str, float]:
    """Trains with periodic saves; returns the median plain step, stall and overlap slowdown."""
    torch.manual_seed(0)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(10, (args.batch,))
    manager = CheckpointManager(folder, keep=0)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(3):  # warm-up: allocator, kernels, momentum buffers
        step()
    plain, stalls, overlapped, calls = [], [], [], []
    for _ in range(args.saves):
        for i in range(args.steps_between):
            writing = manager._pending is not None and manager._pending._thread.is_alive()
            t0 = time.perf_counter()
            step()
            (overlapped if writing else plain).append(time.perf_counter() - t0)
            del i
        manager.wait()  # the bench measures one save at a time
        t0 = time.perf_counter()
        state = {"net": model.state_dict(), "optim": {"m": opt.state_dict()}, "epoch": 0}
        manager.save(state, epoch_end=None, is_best=False, background=background)
        calls.append(time.perf_counter() - t0)
        step()
        stalls.append(time.perf_counter() - t0)
    manager.wait()
    base = statistics.median(plain)
    return {
        "step": base,
        "stall": statistics.median(s - base for s in stalls),
        "call": statistics.median(calls),
        "overlap": statistics.mean(overlapped) - base if overlapped else 0.0,
        "bytes": (folder / "latest.pt").stat().st_size,
    }


def main() -> None:
    """Runs both modes, interleaved, and prints the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=5)
    parser.add_argument("--steps-between", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, list[dict[str, float]]] = {"sync": [], "background": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(2):  # interleaved, so machine drift hits both alike
            for mode in ("sync", "background"):
                folder = Path(tmp) / f"{mode}-{rnd}"
                results[mode].append(run(mode == "background", args, folder))
    med = {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in results.items()}
    size = med["sync"]["bytes"] / 2**20
    print(f"checkpoint: ResNet-18 + SGD momentum, {size:.0f} MiB; CPU, {args.threads} threads")
    print(f"plain step:            {med['sync']['step'] * 1e3:8.1f} ms")
    for mode in ("sync", "background"):
        print(
            f"stall per save, {mode:10s}{med[mode]['stall'] * 1e3:8.1f} ms "
            f"(of which the save call itself {med[mode]['call'] * 1e3:.1f} ms)"
        )
    print(
        "steps during a background write: "
        f"{med['background']['overlap'] * 1e3:+.1f} ms each (writer thread sharing the CPU)"
    )
    ratio = med["background"]["stall"] / med["sync"]["stall"]
    print(f"ratio background/sync stall: {ratio:.3f}")


if __name__ == "__main__":
    main()
