"""Per-step overhead of torchstyle's Trainer against the guide's loop written by hand.

The same tiny MLP, data, loader and optimizer run through
  (a) the guide's loop written by hand and done correctly: tqdm bar, compute-efficiency timing,
      loss kept on the device and logged to TensorBoard every 50 steps, a checkpoint each epoch;
  (b) torchstyle's Trainer with its progress bar, logging every 50 steps, a checkpoint each epoch;
  (c) Lightning with its defaults, when it is installed.
Runs are interleaved (a, b, c, a, b, c, ...) so drifts in machine speed hit each alike; the
script prints the median microseconds per step and the ratio of each to (a).

Usage: python bench/overhead.py [--rounds 5] [--epochs 2] [--steps-per-epoch 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from torchstyle.config import TrainConfig
from torchstyle.data import DataBundle, TensorImageDataset
from torchstyle.engine.trainer import Trainer
from torchstyle.models.base import TorchstyleModel
from torchstyle.spec import DataSpec

BATCH = 64
FEATURES = 64  # 1x8x8 images, flattened
CLASSES = 10


def make_net() -> nn.Module:
    """The tiny MLP every contestant trains."""
    return nn.Sequential(nn.Flatten(), nn.Linear(FEATURES, 64), nn.ReLU(), nn.Linear(64, CLASSES))


class MLPModel(TorchstyleModel):
    """The MLP behind torchstyle's model contract."""

    monitor = ("accuracy", "max")
    default_optimizer = "sgd"
    default_lr = 0.05

    def __init__(self) -> None:
        super().__init__()
        self.net = make_net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, phase):
        x, y = batch
        return {"loss": F.cross_entropy(self(x), y)}

    def evaluation_step(self, batch):
        x, y = batch
        return {"accuracy": (self(x).argmax(1) == y).float()}


def make_data(steps_per_epoch: int) -> DataBundle:
    g = torch.Generator().manual_seed(0)
    n = steps_per_epoch * BATCH
    x = torch.randn(n + BATCH, 1, 8, 8, generator=g)
    y = torch.randint(CLASSES, (n + BATCH,), generator=g)
    return DataBundle(
        train=TensorImageDataset(x[:n], y[:n]),
        test=TensorImageDataset(x[n:], y[n:]),
        spec=DataSpec(channels=1, image_size=8, num_classes=CLASSES),
    )


def _passthrough(batch):
    return batch


def hand_written(data: DataBundle, epochs: int, run_dir: Path) -> int:
    """(a) The guide's loop, written by hand, with its bugs fixed."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    torch.manual_seed(1)
    net = MLPModel()  # the same module (b) trains; its forward is the guide's MyNetwork
    optim = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    sampler = BatchSampler(RandomSampler(data.train), BATCH, drop_last=False)
    loader = DataLoader(data.train, batch_sampler=sampler, collate_fn=_passthrough)
    writer = SummaryWriter(str(run_dir))
    n_iter = 0
    running = torch.zeros(())
    for epoch in range(epochs):
        net.train()
        pbar = tqdm(loader, total=len(loader), leave=False)
        start = time.perf_counter()
        wait = 0.0
        for img, label in pbar:
            wait += time.perf_counter() - start  # data preparation time
            optim.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(img), label)
            loss.backward()
            optim.step()
            running += loss.detach()
            n_iter += 1
            if n_iter % 50 == 0:
                now = time.perf_counter()
                value = (running / 50).item()
                running.zero_()
                writer.add_scalar("train/loss", value, n_iter)
                pbar.set_postfix_str(
                    f"loss={value:.4f} eff={1 - wait / max(now - start, 1e-9):.2f}"
                )
            start = time.perf_counter() if n_iter % 50 == 0 else start
        tmp = run_dir / "ckpt.pt.tmp"
        torch.save(
            {
                "net": net.state_dict(),
                "optim": optim.state_dict(),
                "epoch": epoch + 1,
                "n_iter": n_iter,
            },
            tmp,
        )
        os.replace(tmp, run_dir / "ckpt.pt")
    net.eval()
    with torch.no_grad():
        x, y = data.test.images, data.test.labels
        writer.add_scalar("test/accuracy", (net(x).argmax(1) == y).float().mean().item(), n_iter)
    writer.close()
    return n_iter


def torchstyle_trainer(data: DataBundle, epochs: int, run_dir: Path) -> int:
    """(b) torchstyle's Trainer: bar, logging every 50 steps, checkpoint each epoch."""
    torch.manual_seed(1)
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=BATCH,
        log_every=50,
        run_dir=str(run_dir),
        overwrite=True,
        workers=0,
    )
    trainer = Trainer(cfg, model=MLPModel(), data=data)
    return trainer.fit().steps


def lightning_defaults(data: DataBundle, epochs: int, run_dir: Path) -> int:
    """(c) Lightning with its defaults (CPU, one device)."""
    import lightning as L

    class LitMLP(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_net()

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    torch.manual_seed(1)
    sampler = BatchSampler(RandomSampler(data.train), BATCH, drop_last=False)
    loader = DataLoader(data.train, batch_sampler=sampler, collate_fn=_passthrough)
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, default_root_dir=str(run_dir)
    )
    trainer.fit(LitMLP(), loader)
    return trainer.global_step


@contextlib.contextmanager
def quiet():
    """Sends stdout/stderr (bars, banners) to /dev/null for every contestant alike."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps-per-epoch", type=int, default=500)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1: stable timings)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = make_data(args.steps_per_epoch)
    contestants = {"(a) hand-written": hand_written, "(b) torchstyle": torchstyle_trainer}
    try:
        import lightning  # noqa: F401

        contestants["(c) lightning"] = lightning_defaults
    except ImportError:
        print("lightning not installed: (c) skipped (pip install lightning to include it)")
    times: dict[str, list[float]] = {k: [] for k in contestants}
    for _ in range(args.rounds + 1):  # the first round warms up caches and is dropped
        for name, fn in contestants.items():
            with tempfile.TemporaryDirectory() as tmp, quiet():
                t0 = time.perf_counter()
                steps = fn(data, args.epochs, Path(tmp))
                elapsed = time.perf_counter() - t0
            times[name].append(elapsed / steps * 1e6)
    base = times["(a) hand-written"][1:]
    print(
        f"tiny MLP, batch {BATCH}, {args.epochs} epochs x {args.steps_per_epoch} steps, "
        f"{args.threads} thread(s), {args.rounds} interleaved rounds (a warm-up round dropped)"
    )
    print(
        f"{'':20s} {'us/step (median)':>16s}   ratio to (a): median of per-round ratios [min, max]"
    )
    for name, values in times.items():
        # Each round's ratio compares runs made back to back, so slow drifts of the machine cancel.
        ratios = [v / b for v, b in zip(values[1:], base, strict=True)]
        print(
            f"{name:20s} {statistics.median(values[1:]):16.1f}   {statistics.median(ratios):.3f} "
            f"[{min(ratios):.3f}, {max(ratios):.3f}]"
        )


if __name__ == "__main__":
    main()
