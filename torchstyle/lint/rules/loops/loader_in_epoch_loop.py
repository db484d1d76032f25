"""TS302: a DataLoader or Dataset built inside the epoch loop."""

from __future__ import annotations

import ast

from torchstyle.lint import facts
from torchstyle.lint import vocabulary as vocab
from torchstyle.lint.base import Rule, on
from torchstyle.lint.context import LoopFrame
from torchstyle.lint.registry import register


@register
class LoaderInEpochLoop(Rule):
    """A ``DataLoader`` or ``Dataset`` built inside the epoch loop.

    What:
        ``DataLoader(...)``, a ``torchvision.datasets`` class or a ``Dataset`` subclass of the
        file constructed inside a loop that trains: the loop around the training-step loop
        (the epoch loop, or any loop whose variable is named like ``epoch``) or the step loop
        itself. Loaders built from anything the loop assigns (its variable in
        ``DataLoader(folds[k])`` or ``batch_size=schedule[epoch]``, a dataset made in the
        loop) and loaders built under an ``if`` (a curriculum switch) are rebuilt on purpose,
        or reported where that is made, and left alone.

    Why:
        The guide: "separate the DataLoader from the main program". Building a loader each
        epoch re-indexes the dataset, and with ``num_workers > 0`` it starts and stops every
        worker process each time: the first batches of every epoch wait for them, and
        ``persistent_workers`` cannot help. Build data once, before the loop.

    Example:
        for epoch in range(epochs):
            loader = DataLoader(train_set, batch_size=64, shuffle=True, num_workers=4)
            for inputs, targets in loader:
                ...

    Use instead:
        loader = DataLoader(train_set, batch_size=64, shuffle=True, num_workers=4,
                            persistent_workers=True)
        for epoch in range(epochs):
            for inputs, targets in loader:
                ...
    """

    code = "TS302"
    name = "loader-in-epoch-loop"
    message = "{what} built inside the training loop; build it once, before the loop"
    triggers = ("Data", "data", "datasets")

    @on(ast.Call)
    def call(self, node: ast.Call) -> None:
        """Notes a loader or dataset constructed inside a loop."""
        loop = self.ctx.loop
        if loop is None:
            return
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if not name[:1].isupper() and name not in self.ctx.imports:
            return  # classes are CapWords; anything else is not a loader or dataset
        qualname = self.ctx.qualname(func)
        if qualname is None:
            return
        if qualname in vocab.LOADERS:
            what = "DataLoader"
        elif qualname in vocab.DATASETS or (
            qualname.startswith("torchvision.datasets.")
            and qualname.rsplit(".", 1)[1][:1].isupper()
        ):
            what = f"dataset `{qualname.rsplit('.', 1)[1]}`"
        else:
            info = self.ctx.classes.get(qualname)
            if info is None or not info.is_dataset:
                return
            what = f"dataset `{info.name}`"
        if self.ctx.guard_depth != loop.guard_base:
            return  # built under an `if`: a rebuild on purpose (curriculum, a phase switch)
        self.collect((node, what, set(facts.names_in(node))))

    def on_loop_exit(self, frame: LoopFrame) -> None:
        """Reports at the epoch loop; drops what depends on a loop variable."""
        epoch_loop = (
            frame.direct_step
            or frame.child_step
            or any("epoch" in t.lower() for t in frame.targets)
        )
        keep = self.settle(
            frame, epoch_loop, through_guards=False, keep=lambda item: not item[2] & frame.bound
        )
        loaders = [n for n, w, _ in keep if w == "DataLoader"]
        for node, what, _ in keep:
            if what != "DataLoader" and any(_inside(node, outer) for outer in loaders):
                continue  # DataLoader(MyDataset(...)): one finding is enough
            self.report(node, self.message.format(what=what))


def _inside(node: ast.expr, outer: ast.expr) -> bool:
    start = (node.lineno, node.col_offset)
    lo = (outer.lineno, outer.col_offset)
    hi = (outer.end_lineno or 0, outer.end_col_offset or 0)
    return node is not outer and lo <= start and start < hi
