"""TS307: gradient clipping on gradients that a GradScaler scaled."""

from __future__ import annotations

import ast

from torchstyle.lint.base import Rule, on_call
from torchstyle.lint.registry import register

_CLIPS = frozenset(
    {
        "torch.nn.utils.clip_grad_norm_",
        "torch.nn.utils.clip_grad_value_",
        "torch.nn.utils.clip_grad.clip_grad_norm_",
        "torch.nn.utils.clip_grad.clip_grad_value_",
    }
)


@register
class ClipScaledGradients(Rule):
    """Gradients clipped while a ``GradScaler`` still has them scaled.

    What:
        A function that back-propagates through ``scaler.scale(loss)`` and calls
        ``clip_grad_norm_`` or ``clip_grad_value_``, with no ``scaler.unscale_(optimizer)``
        in it.

    Why:
        With mixed precision, ``scaler.scale(loss).backward()`` leaves every gradient
        multiplied by the loss scale (65536 at the start). Clipping those to ``max_norm=1.0``
        clips almost everything, by a factor that changes whenever the scale does: the
        update is tiny and erratic, and the clipping threshold means nothing. The AMP
        recipe unscales first.

    Example:
        scaler.scale(loss).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        scaler.step(optimizer)

    Use instead:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        scaler.step(optimizer)
    """

    code = "TS307"
    name = "clip-scaled-gradients"
    message = (
        "`{clip}` clips gradients the GradScaler scaled; call `scaler.unscale_(optimizer)` "
        "before clipping"
    )
    triggers = ("scale(",)

    @on_call("clip_grad_norm_", "clip_grad_value_")
    def call(self, node: ast.Call) -> None:
        """Checks one clipping call."""
        if self.ctx.qualname(node.func) not in _CLIPS:
            return  # accelerator.clip_grad_norm_ and friends unscale by themselves
        scope = self.ctx.function
        body = self.ctx.text(scope.node) if scope is not None else self.ctx.source
        if ".scale(" not in body or "unscale_" in body:
            return
        self.report(node, self.message.format(clip=self.ctx.text(node.func)))
