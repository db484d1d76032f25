"""TS201: ``.data`` on a tensor."""

from __future__ import annotations

import ast

from torchstyle.lint import facts
from torchstyle.lint.base import Edit, Fix, Rule, on
from torchstyle.lint.context import KIND_LOSS, KIND_TENSOR, Binding, FileContext
from torchstyle.lint.registry import register

_TENSOR_ATTRS = frozenset({"weight", "bias", "grad"})


@register
class TensorData(Rule):
    """``.data`` read from a tensor.

    What:
        ``x.data`` where ``x`` is certainly a tensor: a parameter (``m.weight``, ``m.bias``,
        a loop variable over ``model.parameters()``), a gradient (``p.grad``), a loss that is
        backpropagated, a network's output or a ``torch`` factory result. Writes through
        ``.data`` are left alone, as initialization code uses them on purpose: assigning to
        ``p.data`` (and reading the value assigned: ``a.data = b.data.clone()``), in-place
        methods (``w.data.normal_()``, ``p.data.copy_(q.data.view(s))``), in-place functions
        (``nn.init.trunc_normal_(p.data)``) and ``w.data[i] = v``; so is ``.data`` on other
        objects (``dataset.data``).

    Why:
        ``.data`` is the pre-0.4 way to reach a Variable's tensor. It returns the tensor
        without telling autograd: in-place changes through it are not tracked, so a backward
        pass can silently compute wrong gradients instead of raising an error. The guide
        recommends ``.detach()`` (or ``.item()`` for a Python number) instead.

    Example:
        _, predicted = torch.max(outputs.data, 1)
        ema = p.data.clone()

    Use instead:
        _, predicted = torch.max(outputs.detach(), 1)
        ema = p.detach().clone()

    Fix:
        Unsafe (in-place writes through ``.detach()`` are checked by autograd): replaces
        ``.data`` with ``.detach()``.
    """

    code = "TS201"
    name = "tensor-data"
    message = "`.data` bypasses autograd's checks; use `.detach()` (or `.item()` for a number)"
    fixable = "unsafe"
    triggers = (".data",)

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the deferred candidates."""
        super().begin_file(ctx)
        self.deferred: list[tuple[ast.Attribute, Binding]] = []
        self.torch = False
        self.writes: set[int] = set()

    @on(ast.Call)
    def write_call(self, node: ast.Call) -> None:
        """Notes ``.data`` written in place: ``w.data.normal_()``, ``init.zeros_(p.data)``."""
        func = node.func
        name = facts.last_name(func)
        if name is None or not name.endswith("_") or name.startswith("__"):
            return
        if isinstance(func, ast.Attribute) and _is_data(func.value):
            self.writes.add(id(func.value))
        for arg in node.args:  # p.data.copy_(q.data.view(s)), nn.init.trunc_normal_(p.data)
            self._copy_source(arg)

    @on(ast.Assign)
    def write_assign(self, node: ast.Assign) -> None:
        """Notes ``a.weight.data = b.weight.data.clone()``: copying parameters, on purpose."""
        if any(_is_data(target) for target in node.targets):
            self._copy_source(node.value)

    def _copy_source(self, node: ast.expr) -> None:
        for sub in ast.walk(node):
            if _is_data(sub):
                self.writes.add(id(sub))

    @on(ast.Subscript)
    def write_item(self, node: ast.Subscript) -> None:
        """Notes ``w.data[i] = v``."""
        if not isinstance(node.ctx, ast.Load) and _is_data(node.value):
            self.writes.add(id(node.value))

    @on(ast.Attribute)
    def attribute(self, node: ast.Attribute) -> None:
        """Checks ``<expr>.data`` in a load."""
        if node.attr != "data" or not isinstance(node.ctx, ast.Load) or id(node) in self.writes:
            return
        ctx = self.ctx
        receiver = node.value
        if isinstance(receiver, ast.Name):
            binding = ctx.binding(receiver.id)
            if binding is not None:
                self.deferred.append((node, binding))
            return
        if isinstance(receiver, ast.Attribute) and receiver.attr in _TENSOR_ATTRS:
            if ctx.imports_any("torch"):
                self.report(node, fix=self._fix(node))
            return
        kind, _ = ctx.expr_kind(receiver)
        if kind in (KIND_TENSOR, KIND_LOSS):
            self.report(node, fix=self._fix(node))

    def end_file(self) -> None:
        """Reports the names that turned out to hold tensors."""
        ctx = self.ctx
        for node, binding in self.deferred:
            if ctx.kind_of(binding) in (KIND_TENSOR, KIND_LOSS) or ctx.is_loss(binding):
                self.report(node, fix=self._fix(node))

    def _fix(self, node: ast.Attribute) -> Fix | None:
        ctx = self.ctx
        value = node.value
        start = ctx.offset(value.end_lineno or 0, value.end_col_offset or 0)
        end = ctx.offset(node.end_lineno or 0, node.end_col_offset or 0)
        if "".join(ctx.source[start:end].split()) != ".data":
            return None
        return Fix((Edit(start, end, ".detach()"),), "unsafe")


def _is_data(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "data"
