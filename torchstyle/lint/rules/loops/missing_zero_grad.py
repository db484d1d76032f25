"""TS306: an optimizer step in a loop that never clears the gradients."""

from __future__ import annotations

import ast
import re

from torchstyle.lint import facts
from torchstyle.lint.base import Rule, on_call
from torchstyle.lint.context import FileContext, LoopFrame
from torchstyle.lint.registry import register

#: Ways of clearing gradients: zero_grad(), p.grad = None, p.grad.zero_(), grad.detach_().
_CLEARS = re.compile(r"zero_grad|\.grad\s*=\s*None|grad\.zero_\(|grad\.detach_\(|\.grad\s*\*=\s*0")


_DEF = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]+(\w+)", re.MULTILINE)


@register
class MissingZeroGrad(Rule):
    """An optimizer step in a training loop that never clears the gradients.

    What:
        A loop that back-propagates and calls ``optimizer.step()`` (or
        ``scaler.step(optimizer)``) on its iterations, with no ``zero_grad()`` (nor
        ``p.grad = None``, ``p.grad.zero_()``) anywhere in the loop. Gradient accumulation
        (``if (i + 1) % k == 0: optimizer.step(); optimizer.zero_grad()``) clears them and
        is fine; so is ``optimizer.step(closure)`` (the closure clears them, as LBFGS needs)
        and a loop that calls a function of the same file that clears them
        (``reset_grad()``).

    Why:
        ``backward()`` adds to ``.grad``; it never overwrites it. Without ``zero_grad()`` each
        step applies the sum of every gradient since the start: the effective learning rate
        grows step by step and training diverges or stalls, with no error. A
        ``zero_grad()`` before the loop clears them only once.

    Example:
        optimizer.zero_grad()
        for inputs, targets in loader:
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()

    Use instead:
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
    """

    code = "TS306"
    name = "missing-zero-grad"
    message = (
        "`{step}` in a loop that never clears the gradients: they accumulate over every "
        "step; call `zero_grad()` in each iteration"
    )
    triggers = ("backward",)

    @on_call("step")
    def call(self, node: ast.Call) -> None:
        """Notes an optimizer step inside a loop."""
        func = node.func
        if self.ctx.loop is None or not isinstance(func, ast.Attribute):
            return
        receiver = facts.last_name(func.value) or ""
        if "scaler" in receiver.lower():
            if not node.args:
                return
        elif node.args or node.keywords or not facts.is_optimizer_step(func):
            return  # optimizer.step(closure) clears gradients in the closure
        self.collect(node)

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the loops waiting for the end of the file."""
        super().begin_file(ctx)
        self.pending: list[tuple[str, list[ast.Call]]] = []

    def on_loop_exit(self, frame: LoopFrame) -> None:
        """Keeps the steps of a back-propagating loop whose text clears nothing."""
        found = self.settle(frame, frame.any_backward)
        if not found:
            return
        text = self.ctx.text(frame.node)
        if not _CLEARS.search(text):
            self.pending.append((text, found))

    def end_file(self) -> None:
        """Reports the loops that call no helper of the file that clears gradients either."""
        helpers = _clearing_functions(self.ctx.source)
        for text, found in self.pending:
            if any(f"{name}(" in text for name in helpers):
                continue  # reset_grad(): a helper of this file calls zero_grad()
            for node in found:
                self.report(node, self.message.format(step=self.ctx.text(node.func) + "()"))


def _clearing_functions(source: str) -> set[str]:
    """Names of the functions defined in ``source`` whose body clears gradients."""
    names = set()
    for match in _CLEARS.finditer(source):
        define = _DEF.findall(source, 0, match.start())
        if define:
            names.add(define[-1])
    return names
