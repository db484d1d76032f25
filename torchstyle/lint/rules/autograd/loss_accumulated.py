"""TS203: a loss accumulated across iterations with its graph attached."""

from __future__ import annotations

import ast

from torchstyle.lint.base import Rule, on, on_call
from torchstyle.lint.context import Binding, FileContext, LoopFrame
from torchstyle.lint.registry import register

_APPENDERS = frozenset({"append", "add", "update"})
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div)


@register
class LossAccumulated(Rule):
    """A loss tensor accumulated across training iterations without ``.detach()``/``.item()``.

    What:
        Inside a loop that trains (it calls ``.backward()`` or ``optimizer.step()``), a loss
        tensor added to a running total (``total += loss``, ``total = total + loss``) or
        collected (``losses.append(loss)``, ``meter.update(loss)``), where the total itself is never
        backpropagated.

    Why:
        The guide: "use .detach() to release tensors from the graph". A loss keeps a
        reference to the autograd graph that produced it. Summing it into a running total
        chains every iteration's graph into one that lives until the epoch ends: memory
        grows step by step (the classic PyTorch FAQ leak), and the final number is still a
        tensor.

    Example:
        for inputs, targets in loader:
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
            running_loss += loss

    Use instead:
        running_loss += loss.detach()    # stays on the device: no sync per step
        # or: running_loss += loss.item() (a float; waits for the GPU)

    Fix:
        Safe: appends ``.detach()`` (same value, same type, no graph).
    """

    code = "TS203"
    name = "loss-accumulated"
    message = (
        "loss `{name}` accumulated with its autograd graph; use `{name}.detach()` (or `.item()`)"
    )
    fixable = "safe"
    triggers = ("backward",)

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the candidates."""
        super().begin_file(ctx)
        self.confirmed: list[tuple[ast.Name, Binding, str | None]] = []

    def _candidate(self, value: ast.expr, total: str | None) -> None:
        if self.ctx.loop is None:
            return
        if isinstance(value, ast.BinOp) and isinstance(value.op, _ARITHMETIC):
            self._candidate(value.left, total)  # total += loss * batch_size
            self._candidate(value.right, total)
            return
        if not isinstance(value, ast.Name):
            return
        binding = self.ctx.binding(value.id)
        if binding is not None:
            self.collect((value, binding, total))

    @on(ast.AugAssign)
    def aug_assign(self, node: ast.AugAssign) -> None:
        """Checks ``total += loss``."""
        if isinstance(node.op, ast.Add):
            target = node.target
            self._candidate(node.value, target.id if isinstance(target, ast.Name) else None)

    @on(ast.Assign)
    def assign(self, node: ast.Assign) -> None:
        """Checks ``total = total + loss``."""
        value = node.value
        if len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
            return
        total = node.targets[0].id
        if isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add):
            left, right = value.left, value.right
            if isinstance(left, ast.Name) and left.id == total:
                self._candidate(right, total)
            elif isinstance(right, ast.Name) and right.id == total:
                self._candidate(left, total)

    @on_call(*_APPENDERS)
    def call(self, node: ast.Call) -> None:
        """Checks ``losses.append(loss)``."""
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _APPENDERS and node.args:
            target = func.value
            self._candidate(node.args[0], target.id if isinstance(target, ast.Name) else None)

    def on_loop_exit(self, frame: LoopFrame) -> None:
        """Keeps the candidates of training loops; hands the others to the enclosing loop."""
        self.confirmed += self.settle(frame, frame.has_step or frame.any_backward)

    def end_file(self) -> None:
        """Reports the accumulated values that are loss tensors."""
        ctx = self.ctx
        for node, binding, total in self.confirmed:
            if total is not None and total in ctx.backward_names:
                continue  # the total is backpropagated: summing losses for one backward pass
            if ctx.is_loss(binding):
                fix = ctx.append_to(node, ".detach()", "safe")
                self.report(node, self.message.format(name=node.id), fix)
