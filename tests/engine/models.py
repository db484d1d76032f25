"""Small models for engine tests (not registered: tests pass instances to the Trainer)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

from torchstyle.data import DataBundle, TensorImageDataset
from torchstyle.models.base import TorchstyleModel
from torchstyle.spec import DataSpec

REAL_CLOCK = SimpleNamespace(now=time.perf_counter, sleep=time.sleep)


class VirtualClock:
    """A clock that moves only when a test's stand-in work says so.

    Patched in as the clock a meter reads, it makes a timing measurement exact and
    independent of machine load: the only time that passes is the time the test declares.
    """

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class TinyMLP(TorchstyleModel):
    """An MLP without batch norm; optionally sleeps a known time per training step.

    ``step_durations`` records how long each training step's sleep really took: on a busy
    machine a sleep overruns, and the truth a measurement is checked against must be the
    time that really passed. ``clock`` (an attribute, not an argument: it is no hyperparameter)
    is what the sleep is taken from; a test sets a :class:`VirtualClock` there.
    """

    monitor = ("accuracy", "max")
    default_optimizer = "sgd"
    default_lr = 0.1

    def __init__(
        self,
        *,
        in_channels: int = 1,
        image_size: int = 8,
        num_classes: int = 10,
        step_sleep: float = 0.0,
    ):
        super().__init__()
        self.step_sleep = step_sleep
        self.step_durations: list[float] = []
        self.clock: Any = REAL_CLOCK
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * image_size * image_size, 32),
            nn.Tanh(),
            nn.Linear(32, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch, phase):
        if self.step_sleep:
            start = self.clock.now()
            self.clock.sleep(self.step_sleep)
            self.step_durations.append(self.clock.now() - start)
        x, y = batch
        return {"loss": nn.functional.cross_entropy(self(x), y)}

    def evaluation_step(self, batch):
        x, y = batch
        logits = self(x)
        return {
            "loss": nn.functional.cross_entropy(logits, y, reduction="none"),
            "accuracy": (logits.argmax(1) == y).float(),
        }


class SlowBatches(TensorImageDataset):
    """In-memory data whose every batch costs a known time to load.

    ``durations`` records how long each load really took (in this process: workers=0), on
    ``clock`` as :class:`TinyMLP` does.
    """

    def __init__(self, images: Tensor, labels: Tensor, batch_cost: float) -> None:
        super().__init__(images, labels)
        self.batch_cost = batch_cost
        self.durations: list[float] = []
        self.clock: Any = REAL_CLOCK

    def __getitems__(self, indices):
        start = self.clock.now()
        self.clock.sleep(self.batch_cost)
        batch = super().__getitems__(indices)
        self.durations.append(self.clock.now() - start)
        return batch


def random_bundle(
    n_train: int = 256, n_test: int = 64, batch_cost: float = 0.0, seed: int = 0
) -> DataBundle:
    """Random 1x8x8 images with random labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, 1, 8, 8, generator=g)
    y = torch.randint(10, (n_train + n_test,), generator=g)
    return DataBundle(
        train=SlowBatches(x[:n_train], y[:n_train], batch_cost),
        test=TensorImageDataset(x[n_train:], y[n_train:]),
        spec=DataSpec(channels=1, image_size=8, num_classes=10),
    )
