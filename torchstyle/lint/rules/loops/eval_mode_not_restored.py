"""TS311: ``model.eval()`` in the training loop with no ``model.train()`` to undo it."""

from __future__ import annotations

import ast
import re

from torchstyle.lint import facts
from torchstyle.lint.base import Edit, Fix, Rule, on_call
from torchstyle.lint.context import LoopFrame
from torchstyle.lint.registry import register

_TRAIN = re.compile(r"\.train\(\s*(?:True|mode\s*=\s*True)?\s*\)")


@register
class EvalModeNotRestored(Rule):
    """``model.eval()`` inside the training loop, and no ``model.train()`` in that loop.

    What:
        A loop that trains (it back-propagates or steps an optimizer, itself or in a loop
        inside it) and calls ``<network>.eval()`` (or ``.train(False)``), with no
        ``.train()`` call anywhere in the loop: after the first evaluation, every later
        training step runs in evaluation mode. A network switched to evaluation on every
        step of the step loop itself (a frozen teacher) is left alone, and so is a copy
        that is never trained: a module whose parameters reach no optimizer in the file and
        that is deep-copied, frozen (``requires_grad_(False)``) or named as a copy (EMA,
        teacher, target, momentum encoder), as the file's semantic model tells.

    Why:
        ``eval()`` is a switch, not a scope: it stays on until ``train()``. Training in
        evaluation mode disables dropout and freezes batch-norm statistics, so the model
        trains differently from the first epoch (or the first evaluation) on, silently. A
        ``model.train()`` before the loop runs only once.

    Example:
        model.train()
        for epoch in range(epochs):
            for inputs, targets in train_loader:
                ...
                optimizer.step()
            model.eval()
            evaluate(model, val_loader)

    Use instead:
        for epoch in range(epochs):
            model.train()
            for inputs, targets in train_loader:
                ...
            model.eval()
            evaluate(model, val_loader)

    Fix:
        Unsafe (training then runs in training mode, as intended): inserts
        ``model.train()`` as the first statement of the loop.
    """

    code = "TS311"
    name = "eval-mode-not-restored"
    message = (
        "`{call}` in the training loop, and nothing in the loop calls `.train()`: later "
        "steps train in evaluation mode; call `{receiver}.train()` before training"
    )
    fixable = "unsafe"
    triggers = ("eval()", "train(False)")

    @on_call("eval", "train")
    def call(self, node: ast.Call) -> None:
        """Notes a switch to evaluation mode on a network inside a loop."""
        func = node.func
        if self.ctx.loop is None or not isinstance(func, ast.Attribute):
            return
        if facts.mode_call(node) != "eval":
            return
        if func.attr == "train" and not (node.args and facts.is_false(node.args[0])):
            return  # train(flag): the flag may be True
        receiver = facts.last_name(func.value)
        if receiver is None or not (
            facts.is_model_name(receiver) or self.ctx.is_module_expr(func.value)
        ):
            return
        if self.ctx.semantic.is_trained(func.value) is False:
            return  # a copy (EMA, teacher, frozen): never trained, eval() is its only mode
        loop = self.ctx.loop
        self.collect((node, loop, self.ctx.guard_depth != loop.guard_base))

    def on_loop_exit(self, frame: LoopFrame) -> None:
        """Judges at the outermost loop of the function: does anything in it call train()?"""
        found = self.settle(
            frame,
            frame.parent is None,
            # switched on every training step itself: a frozen network (a teacher), on purpose
            keep=lambda item: not (item[1] is frame and frame.direct_step and not item[2]),
        )
        if not found or not frame.has_step:
            return
        if _TRAIN.search(self.ctx.text(frame.node)):
            return
        fixed: set[str] = set()
        for node, _, _ in found:
            func = node.func
            receiver = self.ctx.text(func.value) if isinstance(func, ast.Attribute) else "model"
            fix = None if receiver in fixed else self._fix(frame, receiver)
            fixed.add(receiver)
            message = self.message.format(call=self.ctx.text(node), receiver=receiver)
            self.report(node, message, fix)

    def _fix(self, frame: LoopFrame, receiver: str) -> Fix | None:
        """Puts ``receiver.train()`` first in the loop's body."""
        first = frame.node.body[0]
        if first.lineno == frame.node.lineno:
            return None  # a one-line loop
        line = self.ctx.lines[first.lineno - 1]
        indent = line[: len(line) - len(line.lstrip())]
        at = self.ctx.offset(first.lineno, 0)
        return Fix((Edit(at, at, f"{indent}{receiver}.train()\n"),), "unsafe")
