"""TS309: ``backward()`` where autograd is off."""

from __future__ import annotations

import ast

from torchstyle.lint import facts
from torchstyle.lint.base import Rule, after, on, on_call
from torchstyle.lint.context import FileContext
from torchstyle.lint.registry import register

_OFF = frozenset(
    {
        "torch.no_grad",
        "torch.inference_mode",
        "torch.autograd.no_grad",
        "torch.autograd.inference_mode",
        "torch.autograd.grad_mode.no_grad",
        "torch.autograd.grad_mode.inference_mode",
    }
)
_ON = frozenset({"torch.enable_grad", "torch.autograd.enable_grad"})
_SET = frozenset({"torch.set_grad_enabled", "torch.autograd.set_grad_enabled"})


@register
class BackwardUnderNoGrad(Rule):
    """``backward()`` inside ``torch.no_grad()`` or ``torch.inference_mode()``.

    What:
        ``loss.backward()`` (or ``accelerator.backward(loss)``) inside a
        ``with torch.no_grad():`` / ``torch.inference_mode()`` /
        ``torch.set_grad_enabled(False)`` block, or in a function decorated with one,
        unless a ``torch.enable_grad()`` block turns autograd back on around it.
        ``set_grad_enabled(phase == "train")`` is left alone.

    Why:
        Under ``no_grad`` the forward pass records no graph, so the loss has no
        ``grad_fn`` and ``backward()`` raises "element 0 of tensors does not require grad"
        - or, when the loss was computed before the block, it back-propagates but the
        code around it was meant to evaluate, not train. Either way the block is in the
        wrong place.

    Example:
        with torch.no_grad():
            loss = criterion(model(inputs), targets)
            loss.backward()

    Use instead:
        loss = criterion(model(inputs), targets)
        loss.backward()
    """

    code = "TS309"
    name = "backward-under-no-grad"
    message = "`backward()` with autograd off (inside `{where}`): nothing to back-propagate"
    triggers = ("backward",)

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the grad-mode stack."""
        super().begin_file(ctx)
        #: (node that set the mode, "off" / "on" / "reset", what to call it)
        self.modes: list[tuple[ast.AST, str, str]] = []

    def _mode(self, expr: ast.expr) -> str | None:
        call = expr if isinstance(expr, ast.Call) else None
        qualname = self.ctx.qualname(call.func if call is not None else expr)
        if qualname in _OFF:
            return "off"
        if qualname in _ON:
            return "on"
        if qualname in _SET and call is not None and call.args:
            if facts.is_false(call.args[0]):
                return "off"
            return "on"  # set_grad_enabled(flag): may well be on
        return None

    @on(ast.With, ast.AsyncWith)
    def enter_with(self, node: ast.With) -> None:
        """Pushes the mode a ``with`` block sets."""
        for item in node.items:
            mode = self._mode(item.context_expr)
            if mode is not None:
                self.modes.append((node, mode, self.ctx.text(item.context_expr)))
                return

    @on(ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
    def enter_function(self, node: ast.AST) -> None:
        """A function body runs in its caller's mode, unless a decorator sets one."""
        for decorator in getattr(node, "decorator_list", ()):
            mode = self._mode(decorator)
            if mode is not None:
                self.modes.append((node, mode, "@" + self.ctx.text(decorator)))
                return
        self.modes.append((node, "reset", ""))

    @after(ast.With, ast.AsyncWith, ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
    def leave(self, node: ast.AST) -> None:
        """Pops the mode a block or function set."""
        if self.modes and self.modes[-1][0] is node:
            self.modes.pop()

    @on_call("set_grad_enabled")
    def switch(self, node: ast.Call) -> None:
        """``torch.set_grad_enabled(True)`` as a statement: on again for the rest of the body."""
        if not self.modes or self.modes[-1][1] != "off" or self.ctx.grad_off:
            return  # the checker's model says whether the switch took (not inside a with)
        if self._mode(node) == "on" and node.args and facts.is_true(node.args[0]):
            block, _, where = self.modes[-1]
            self.modes[-1] = (block, "on", where)

    @on_call("backward")
    def call(self, node: ast.Call) -> None:
        """Checks one backward call."""
        if not self.modes or self.modes[-1][1] != "off":
            return
        func = node.func
        if not isinstance(func, ast.Attribute) or func.attr != "backward":
            return
        self.report(node, self.message.format(where=self.modes[-1][2]))
