"""TS303: per-sample file reads inside the training loop."""

from __future__ import annotations

import ast

from torchstyle.lint import vocabulary as vocab
from torchstyle.lint.base import Rule, on_call
from torchstyle.lint.context import LoopFrame
from torchstyle.lint.registry import register

_WRITE_MODES = set("wax+")


@register
class FileReadInLoop(Rule):
    """Files read inside the training loop instead of by a Dataset.

    What:
        In a loop that trains (it calls ``.backward()`` or ``optimizer.step()`` on every
        iteration), or in a loop nested in one: ``open(path)`` for reading,
        ``Image.open``, ``cv2.imread``, ``torchvision.io.read_image``, ``np.load``,
        ``pd.read_csv`` and similar readers.

    Why:
        The guide: "separate the data loading from the main program; PyTorch loads data in
        background processes". A read in the loop runs in the training process, one sample
        after another, while the GPU waits. In a ``Dataset.__getitem__`` the same read runs
        in ``num_workers`` processes, ahead of time.

    Example:
        for paths, targets in loader:
            images = torch.stack([to_tensor(Image.open(p)) for p in paths])
            loss = criterion(model(images), targets)
            loss.backward()

    Use instead:
        class Images(Dataset):
            def __getitem__(self, i):
                return to_tensor(Image.open(self.paths[i])), self.targets[i]

        loader = DataLoader(Images(paths, targets), batch_size=64, num_workers=8)
    """

    code = "TS303"
    name = "file-read-in-loop"
    message = (
        "`{what}` reads files inside the training loop; read them in a Dataset's `__getitem__`"
    )

    def _what(self, node: ast.Call) -> str | None:
        func = node.func
        if isinstance(func, ast.Name) and func.id == "open" and "open" not in self.ctx.imports:
            mode = node.args[1] if len(node.args) > 1 else None
            for kw in node.keywords:
                if kw.arg == "mode":
                    mode = kw.value
            if mode is None:
                return "open"
            if isinstance(mode, ast.Constant) and isinstance(mode.value, str):
                return None if _WRITE_MODES & set(mode.value) else "open"
            return None
        qualname = self.ctx.qualname(func)
        if qualname in vocab.FILE_READERS:
            return self.ctx.text(func) or qualname
        return None

    @on_call("open", *vocab.last_names(vocab.FILE_READERS))
    def call(self, node: ast.Call) -> None:
        """Notes a file read inside a loop."""
        if self.ctx.loop is None:
            return
        what = self._what(node)
        if what is not None:
            self.collect((node, what))

    def on_loop_exit(self, frame: LoopFrame) -> None:
        """Reports reads of a training-step loop; hands the others to the enclosing loop."""
        for node, what in self.settle(frame, frame.direct_step):
            self.report(node, self.message.format(what=what))
