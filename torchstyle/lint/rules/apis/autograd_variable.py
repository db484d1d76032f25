"""TS501: ``torch.autograd.Variable``."""

from __future__ import annotations

import ast

from torchstyle.lint.base import Rule, on, on_call
from torchstyle.lint.registry import register

_VARIABLE = frozenset({"torch.autograd.Variable", "torch.autograd.variable.Variable"})
_ATOMS = (
    ast.Name,
    ast.Attribute,
    ast.Call,
    ast.Subscript,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Dict,
)


@register
class AutogradVariable(Rule):
    """``torch.autograd.Variable``, deprecated since PyTorch 0.4.

    What:
        Any call of ``Variable(...)`` (``torch.autograd.Variable``), however imported, and
        the line that imports it (``from torch.autograd import Variable``).

    Why:
        Since PyTorch 0.4 (2018) tensors carry autograd themselves; ``Variable(t)`` just
        returns a detached alias of ``t`` (and ``volatile=True`` is ignored, so code that
        relied on it for inference silently builds graphs). The guide notes that ``.data``
        and ``Variable`` belong to "earlier versions of PyTorch".

    Example:
        inputs = Variable(images.cuda())
        weights = Variable(torch.zeros(10), requires_grad=True)

    Use instead:
        inputs = images.cuda()
        weights = torch.zeros(10, requires_grad=True)

    Fix:
        Unsafe (``Variable(t)`` detaches ``t``; the tensor itself might carry a graph):
        ``Variable(x)`` becomes ``x`` when ``x`` is its only argument.
    """

    code = "TS501"
    name = "autograd-variable"
    message = "`Variable` is deprecated since PyTorch 0.4; use the tensor itself (`requires_grad=True` to track it)"
    fixable = "unsafe"
    triggers = ("Variable",)

    @on(ast.ImportFrom)
    def import_from(self, node: ast.ImportFrom) -> None:
        """Reports the import of ``Variable`` where the name is imported."""
        if node.level or not node.module:
            return
        for alias in node.names:
            if f"{node.module}.{alias.name}" in _VARIABLE:
                self.report(
                    alias,
                    "`Variable` is deprecated since PyTorch 0.4; drop this import and use "
                    "tensors themselves (`requires_grad=True` to track them)",
                )

    @on_call("Variable")
    def call(self, node: ast.Call) -> None:
        """Checks one call."""
        if self.ctx.qualname(node.func) not in _VARIABLE:
            return
        fix = None
        if len(node.args) == 1 and not node.keywords and not isinstance(node.args[0], ast.Starred):
            arg = node.args[0]
            text = self.ctx.text(arg)
            if text:
                if not isinstance(arg, _ATOMS):
                    text = f"({text})"
                fix = self.ctx.replace(node, text, "unsafe")
        self.report(node, fix=fix)
