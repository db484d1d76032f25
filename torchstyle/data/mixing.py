"""Batch-level regularisation of a classification batch: random erasing, mixup, cutmix and
label smoothing, done by torchvision's ``transforms.v2`` on whatever device the batch is on.

Every draw is keyed, not taken from a running RNG: the batch of optimizer step ``s`` (micro-
batch ``m``) draws from ``(seed, s, m)``, and the erasing of a sample from its position in
the global batch too. torchvision's transforms draw from torch's global generator, so each
runs inside :func:`torch.random.fork_rng` seeded with the key. A resumed run therefore mixes
its batches exactly as the uninterrupted one, and a run over N processes exactly as one
process: each process's share is gathered into the global batch (in the order one process
would hold it), mixed, and the process keeps its share.

The targets become class probabilities ``(B, K)`` (each row sums to 1), which
``cross_entropy`` takes as they are: the loss of a mixed batch is
``lam * CE(y_a) + (1 - lam) * CE(y_b)``, with label smoothing folded into the targets as
``(1 - eps) * t + eps / K``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

#: Gathers a tensor from every process, in rank order (one process: ``[t]``).
Gather = Callable[[Tensor], list[Tensor]]

_MASK31 = 0x7FFFFFFF


def key(*parts: int) -> int:
    """A 31-bit seed from integers (splitmix-style mixing; neighbouring keys are unrelated)."""
    x = 0x2545F491
    for p in parts:
        x = (x ^ (p & 0xFFFFFFFFFFFF)) * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & _MASK31


def smooth(targets: Tensor, eps: float) -> Tensor:
    """Label smoothing of probability targets ``(B, K)``: ``(1 - eps) * t + eps / K``."""
    if not eps:
        return targets
    return targets * (1.0 - eps) + eps / targets.shape[1]


@dataclass(frozen=True)
class BatchRecipe:
    """What is done to each training batch of a classifier.

    Attributes:
        num_classes: Classes of the targets.
        seed: The run's seed (keys every draw).
        label_smoothing: Smoothing of the targets.
        mixup: Mixup's Beta alpha (0: off).
        cutmix: Cutmix's Beta alpha (0: off).
        switch_prob: With both on, the probability that a batch uses cutmix.
        random_erasing: Probability that a sample has a rectangle erased (to 0, mid-grey in
            ``[-1, 1]``), as torchvision's ``RandomErasing`` (scale 0.02-0.33, ratio 0.3-3.3).
    """

    num_classes: int
    seed: int
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    switch_prob: float = 0.5
    random_erasing: float = 0.0

    @property
    def active(self) -> bool:
        """Whether a batch is changed at all."""
        return bool(self.label_smoothing or self.mixup or self.cutmix or self.random_erasing)

    @property
    def mixes(self) -> bool:
        """Whether batches are mixed (and so gathered across processes)."""
        return bool(self.mixup or self.cutmix)

    def __call__(
        self,
        images: Tensor,
        labels: Tensor,
        step: int,
        *,
        micro: int = 0,
        rank: int = 0,
        world: int = 1,
        gather: Gather | None = None,
    ) -> tuple[Tensor, Tensor]:
        """This process's share of the global batch, erased and mixed, with its targets.

        Args:
            images: ``(B, C, H, W)`` float images of this process (global positions
                ``rank, rank + world, ...``: the data loader shards a batch so).
            labels: ``(B,)`` int64 labels.
            step: The optimizer step the batch is for.
            micro: Its micro-batch within the step (gradient accumulation).
            rank: This process.
            world: Number of processes.
            gather: All-gather across processes (needed to mix when ``world > 1``).

        Returns:
            The images and ``(B, K)`` probability targets.
        """
        positions = torch.arange(images.shape[0]) * world + rank
        if self.random_erasing:
            images = self._erase(images, positions, step, micro)
        if not self.mixes:
            targets = torch.nn.functional.one_hot(labels, self.num_classes).to(images.dtype)
            return images, smooth(targets, self.label_smoothing)
        if world > 1:
            assert gather is not None, "mixing over several processes needs a gather"
            images, labels = _interleave(gather(images)), _interleave(gather(labels))
        images, targets = self._mix(images, labels, step, micro)
        if world > 1:
            images, targets = images[rank::world], targets[rank::world]
        return images, smooth(targets, self.label_smoothing)

    def _erase(self, images: Tensor, positions: Tensor, step: int, micro: int) -> Tensor:
        from torchvision.transforms import v2

        erase = v2.RandomErasing(p=self.random_erasing, value=0)
        out = []
        for img, pos in zip(images, positions.tolist(), strict=True):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(key(self.seed, 1, step, micro, pos))
                out.append(erase(img))
        return torch.stack(out)

    def _mix(self, images: Tensor, labels: Tensor, step: int, micro: int) -> tuple[Tensor, Tensor]:
        """torchvision's ``MixUp`` or ``CutMix`` (chosen per batch) of a whole batch; the
        partner of sample ``i`` is sample ``i - 1``, and cutmix's weight is its box's area."""
        from torchvision.transforms import v2

        mixers = []
        if self.mixup:
            mixers.append(v2.MixUp(alpha=self.mixup, num_classes=self.num_classes))
        if self.cutmix:
            mixers.append(v2.CutMix(alpha=self.cutmix, num_classes=self.num_classes))
        p = [1.0 - self.switch_prob, self.switch_prob] if len(mixers) == 2 else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(key(self.seed, 2, step, micro))
            mixed, targets = v2.RandomChoice(mixers, p=p)(images, labels)
        return mixed, targets.to(images.dtype)


def _interleave(shares: list[Tensor]) -> Tensor:
    """Process shares (rank ``r`` holds global positions ``r, r + N, ...``) to the global batch."""
    stacked = torch.stack(shares, dim=1)  # (B_local, N, ...)
    return stacked.reshape(-1, *stacked.shape[2:])
