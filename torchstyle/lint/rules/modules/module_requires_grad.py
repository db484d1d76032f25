"""TS103: ``module.requires_grad = False`` on an ``nn.Module``."""

from __future__ import annotations

import ast

from torchstyle.lint.base import Fix, Rule, on
from torchstyle.lint.context import FileContext, Scope
from torchstyle.lint.registry import register


@register
class ModuleRequiresGrad(Rule):
    """``requires_grad`` assigned on a module, where it does nothing.

    What:
        ``m.requires_grad = False`` where ``m`` is certainly an ``nn.Module``: built from a
        module class in sight (``nn.Linear(...)``, ``resnet18()``, a subclass defined in the
        file), a loop variable over ``model.modules()``/``children()``, an argument annotated
        ``nn.Module``, or ``self`` in a module class that never reads ``self.requires_grad``.
        Setting it on parameters (``for p in model.parameters(): p.requires_grad = False``)
        is right and left alone.

    Why:
        ``requires_grad`` is a tensor attribute. On a module it just creates a new, unused
        Python attribute: the parameters keep training, silently. The guide freezes a
        network by setting ``requires_grad = False`` on each parameter.

    Example:
        backbone = torchvision.models.resnet18()
        backbone.requires_grad = False

    Use instead:
        backbone.requires_grad_(False)   # sets it on every parameter

    Fix:
        Unsafe (it changes what trains, which is the point): rewrites the assignment to
        ``m.requires_grad_(value)``.
    """

    code = "TS103"
    name = "module-requires-grad"
    message = "`requires_grad` on a module does nothing; use `module.requires_grad_(False)`"
    fixable = "unsafe"
    triggers = ("requires_grad",)

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the per-class state."""
        super().begin_file(ctx)
        self.pending: dict[int, list[ast.Assign]] = {}
        self.reads: set[int] = set()

    @on(ast.Assign)
    def assign(self, node: ast.Assign) -> None:
        """Checks ``x.requires_grad = value``."""
        if len(node.targets) != 1:
            return
        target = node.targets[0]
        if not isinstance(target, ast.Attribute) or target.attr != "requires_grad":
            return
        receiver = target.value
        if isinstance(receiver, ast.Name) and receiver.id == "self":
            info = self.ctx.current_class()
            if info is not None and info.is_module:
                self.pending.setdefault(id(info), []).append(node)
            return
        if self.ctx.is_module_expr(receiver):
            self.report(node, fix=self._fix(node, receiver, node.value))

    @on(ast.Attribute)
    def attribute(self, node: ast.Attribute) -> None:
        """Notes reads of ``self.requires_grad`` (then the class uses it as its own flag)."""
        if node.attr == "requires_grad" and isinstance(node.ctx, ast.Load):
            value = node.value
            if isinstance(value, ast.Name) and value.id == "self":
                info = self.ctx.current_class()
                if info is not None:
                    self.reads.add(id(info))

    def on_scope_exit(self, scope: Scope) -> None:
        """Reports the ``self.requires_grad = ...`` of a class that never reads it."""
        if scope.kind != "class" or scope.class_info is None:
            return
        key = id(scope.class_info)
        for node in self.pending.pop(key, []):
            if key not in self.reads:
                target = node.targets[0]
                assert isinstance(target, ast.Attribute)
                self.report(node, fix=self._fix(node, target.value, node.value))

    def _fix(self, node: ast.Assign, receiver: ast.expr, value: ast.expr) -> Fix | None:
        text = f"{self.ctx.text(receiver)}.requires_grad_({self.ctx.text(value)})"
        return self.ctx.replace(node, text, "unsafe")
