"""TS104: a host sync inside ``forward``."""

from __future__ import annotations

import ast

from torchstyle.lint import facts
from torchstyle.lint.base import Rule, after, on, on_call
from torchstyle.lint.context import FileContext
from torchstyle.lint.registry import register

_SYNCS = frozenset({"item", "cpu"})


@register
class HostSyncInForward(Rule):
    """A host sync inside the ``forward`` of an ``nn.Module``: ``.item()``, ``.cpu()``, ``print``.

    What:
        Inside ``forward`` of an ``nn.Module`` subclass: ``x.item()``, ``x.cpu()`` or
        ``print(...)`` of a variable (a tensor, as far as the code tells; text, shapes and
        numbers are fine). ``.numpy()`` and ``.tolist()`` are TS101's.
        A ``forward`` decorated with ``@torch.no_grad()`` (post-processing that returns
        CPU results) and branches that raise, assert or warn are left alone.

    Why:
        The guide keeps ``forward`` free of host code. The device runs asynchronously; each
        of these waits until it has finished everything queued so far, on every call of the
        model: the next kernels cannot be queued meanwhile, ``torch.compile`` breaks the
        graph there, and CUDA graphs cannot capture the model. Compute the value with
        tensor operations and keep it on the device.

    Example:
        def forward(self, x):
            scale = x.abs().max().item()
            return self.net(x / scale)

    Use instead:
        def forward(self, x):
            scale = x.abs().amax()
            return self.net(x / scale)
    """

    code = "TS104"
    name = "host-sync-in-forward"
    message = "`{what}` in `{where}` waits for the device on every call; keep it a tensor"
    triggers = ("forward",)

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the error-branch stack."""
        super().begin_file(ctx)
        self.error_branches: list[ast.If] = []

    def _forward(self) -> str | None:
        scope = self.ctx.function
        if scope is None or scope.name != "forward" or scope.grad_off:
            return None
        parent = scope.parent
        info = parent.class_info if parent is not None else None
        if info is None or not info.is_module:
            return None
        return f"{info.name}.forward"

    def _tensor_like(self, node: ast.expr) -> bool:
        if isinstance(node, ast.JoinedStr):
            return any(
                isinstance(v, ast.FormattedValue) and self._tensor_like(v.value)
                for v in node.values
            )
        if not isinstance(node, ast.Name) or node.id == "self":
            return False
        return self.ctx.kind_of(self.ctx.binding(node.id)) != "number"

    @on(ast.If)
    def enter_if(self, node: ast.If) -> None:
        """Notes entering an error branch."""
        if self.error_branches or facts.reports_error(node.body):
            self.error_branches.append(node)

    @after(ast.If)
    def leave_if(self, node: ast.If) -> None:
        """Notes leaving it."""
        if self.error_branches and self.error_branches[-1] is node:
            self.error_branches.pop()

    @on_call("item", "cpu", "print")
    def call(self, node: ast.Call) -> None:
        """Checks one call."""
        if self.error_branches:
            return
        func = node.func
        if isinstance(func, ast.Attribute):
            if func.attr not in _SYNCS or node.args or node.keywords:
                return
            what = f".{func.attr}()"
        elif isinstance(func, ast.Name) and func.id == "print" and "print" not in self.ctx.imports:
            if not any(self._tensor_like(a) for a in node.args):
                return  # text, shapes and numbers sync nothing
            what = "print(...)"
        else:
            return
        where = self._forward()
        if where is not None:
            self.report(node, self.message.format(what=what, where=where))
