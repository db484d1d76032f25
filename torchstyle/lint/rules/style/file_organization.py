"""TS602: networks, losses and a training loop in one file."""

from __future__ import annotations

import ast

from torchstyle.lint.base import Rule
from torchstyle.lint.context import FileContext, LoopFrame
from torchstyle.lint.registry import register


@register
class FileOrganization(Rule):
    """Networks, losses and a training loop all in one file (off by default).

    What:
        One file that defines at least one network (an ``nn.Module`` subclass), at least one
        loss (an ``nn.Module`` subclass named ``...Loss``) and a training loop (a loop that
        calls ``.backward()`` or ``optimizer.step()``).

    Why:
        The guide's file organization: layers, networks, losses and ops each in their own
        file (``layers.py``, ``networks.py``, ``losses.py``, ``ops.py``), finished models
        named after the model, and training and test scripts that only import them. A single
        file mixing all three cannot be reused: importing the network runs or drags in the
        training code. Off by default because single-file examples and notebooks exported to
        scripts are legitimate.

    Example:
        # train.py
        class Generator(nn.Module): ...
        class PerceptualLoss(nn.Module): ...
        for epoch in range(epochs):
            ...
            loss.backward()

    Use instead:
        # networks.py: class Generator(nn.Module): ...
        # losses.py:   class PerceptualLoss(nn.Module): ...
        # train.py
        from networks import Generator
        from losses import PerceptualLoss
    """

    code = "TS602"
    name = "file-organization"
    message = "file organization"
    default_enabled = False
    triggers = ("Loss",)

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the first training loop."""
        super().begin_file(ctx)
        self.loop: ast.AST | None = None

    def on_loop_exit(self, frame: LoopFrame) -> None:
        """Remembers the outermost training loop."""
        if frame.direct_step and self.loop is None:
            self.loop = frame.node

    def end_file(self) -> None:
        """Reports a file that holds all three."""
        if self.loop is None:
            return
        classes = self.ctx.classes.values()
        networks = [c.name for c in classes if c.is_module and not c.is_loss]
        losses = [c.name for c in classes if c.is_loss]
        if networks and losses:
            self.report(
                self.loop,
                f"this file holds networks ({', '.join(networks[:3])}), losses "
                f"({', '.join(losses[:3])}) and a training loop; put them in networks.py, "
                "losses.py and a training script",
                end=self.loop.iter if isinstance(self.loop, ast.For) else None,
            )
