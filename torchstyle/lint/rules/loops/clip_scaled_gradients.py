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
        A function that back-propagates through ``scaler.scale(loss)`` and then, in the
        same block, calls ``torch.nn.utils.clip_grad_norm_`` or ``clip_grad_value_``, with no
        ``scaler.unscale_(optimizer)`` in it. A clip in another branch than the scaling
        (``if amp: ... else: clip``) and ``accelerator.clip_grad_norm_`` (which unscales) are
        left alone.

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
        if scope is None:
            return
        start = self.ctx.span(scope.node)[0]
        before = self.ctx.source[start : self.ctx.span(node)[0]]
        scaled = before.rfind(".scale(")
        if scaled < 0 or "unscale_" in self.ctx.text(scope.node):
            return
        if _block_ends(before[before.rfind("\n", 0, scaled) + 1 :]):
            return  # scale() sits in another branch (`if amp: ... else: clip`)
        self.report(node, self.message.format(clip=self.ctx.text(node.func)))


def _block_ends(text: str) -> bool:
    """Whether a line between the first and the last of ``text`` is indented less than the first."""
    lines = text.split("\n")
    first = len(lines[0]) - len(lines[0].lstrip())
    indent = None
    for line in lines[1:-1]:
        if line.strip():
            width = len(line) - len(line.lstrip())
            indent = width if indent is None else min(indent, width)
    return indent is not None and indent < first
