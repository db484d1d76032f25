"""TS308: a DistributedSampler whose set_epoch is never called."""

from __future__ import annotations

import ast

from torchstyle.lint import facts
from torchstyle.lint.base import Rule, on_call
from torchstyle.lint.context import FileContext, LoopFrame
from torchstyle.lint.registry import register

_SAMPLERS = frozenset(
    {
        "torch.utils.data.DistributedSampler",
        "torch.utils.data.distributed.DistributedSampler",
    }
)


@register
class SamplerWithoutSetEpoch(Rule):
    """A shuffling ``DistributedSampler`` whose ``set_epoch`` is never called.

    What:
        A file that builds a ``DistributedSampler`` (shuffling, the default) and runs an
        epoch loop (a loop around the training-step loop, or a loop over ``epoch``), and
        never calls ``set_epoch`` anywhere.

    Why:
        A ``DistributedSampler`` seeds its shuffle with ``seed + epoch``, and the epoch only
        changes through ``sampler.set_epoch(epoch)``. Without it every epoch visits the
        data in the same order, on every process: the shuffle happens once, and the model
        sees the same batches in the same sequence for the whole run.

    Example:
        sampler = DistributedSampler(dataset)
        loader = DataLoader(dataset, batch_size=64, sampler=sampler)
        for epoch in range(epochs):
            for inputs, targets in loader:
                ...

    Use instead:
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            for inputs, targets in loader:
                ...
    """

    code = "TS308"
    name = "sampler-without-set-epoch"
    message = (
        "DistributedSampler without `set_epoch(epoch)`: every epoch shuffles the data the "
        "same way; call `sampler.set_epoch(epoch)` at the start of each epoch"
    )
    triggers = ("DistributedSampler",)

    @on_call("DistributedSampler")
    def call(self, node: ast.Call) -> None:
        """Notes a shuffling sampler."""
        if self.ctx.qualname(node.func) not in _SAMPLERS:
            return
        shuffle = facts.keyword(node, "shuffle")
        if shuffle is not None and not facts.is_true(shuffle.value):
            return  # shuffle=False (or a flag): the order is fixed on purpose, or unknown
        self.samplers.append(node)

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the samplers and epoch loops seen."""
        super().begin_file(ctx)
        self.samplers: list[ast.Call] = []
        self.epoch_loop = False

    def on_loop_exit(self, frame: LoopFrame) -> None:
        """Notes an epoch loop."""
        if frame.child_step or (
            frame.nested_step and any("epoch" in t.lower() for t in frame.targets)
        ):
            self.epoch_loop = True

    def end_file(self) -> None:
        """Reports the samplers of a file that runs epochs and never calls set_epoch."""
        if self.epoch_loop and "set_epoch" not in self.ctx.source:
            for node in self.samplers:
                self.report(node)
