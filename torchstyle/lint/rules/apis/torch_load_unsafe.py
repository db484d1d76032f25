"""TS502: ``torch.load`` without ``weights_only=True``."""

from __future__ import annotations

import ast

from torchstyle.lint import facts
from torchstyle.lint.base import Edit, Fix, Rule, on_call
from torchstyle.lint.registry import register

_LOADS = frozenset({"torch.load", "torch.serialization.load"})


@register
class TorchLoadUnsafe(Rule):
    """``torch.load`` without ``weights_only=True``.

    What:
        A call of ``torch.load`` that does not pass ``weights_only``. An explicit
        ``weights_only=False`` is a deliberate choice and left alone, as is ``**kwargs``.

    Why:
        Without ``weights_only=True``, ``torch.load`` unpickles arbitrary Python objects: a
        checkpoint downloaded or shared by someone else can run any code on load. PyTorch
        2.6 made ``True`` the default, so code that relies on the old default breaks or
        behaves differently across versions; saying it keeps both safe and explicit.
        Checkpoints of tensors, dicts, lists and numbers load fine with it.

    Example:
        state = torch.load("checkpoint.pt")

    Use instead:
        state = torch.load("checkpoint.pt", map_location="cpu", weights_only=True)

    Fix:
        Unsafe (a checkpoint holding other objects then fails to load): adds
        ``weights_only=True``.
    """

    code = "TS502"
    name = "torch-load-unsafe"
    message = "`torch.load` without `weights_only=True` can run arbitrary code from the file"
    fixable = "unsafe"
    triggers = ("load",)

    @on_call("load")
    def call(self, node: ast.Call) -> None:
        """Checks one call."""
        if self.ctx.qualname(node.func) not in _LOADS:
            return
        if facts.keyword(node, "weights_only") is not None or facts.has_star_kwargs(node):
            return
        self.report(node, fix=self._fix(node))

    def _fix(self, node: ast.Call) -> Fix | None:
        args: list[ast.AST] = [*node.args, *node.keywords]
        if not args:
            return None
        last = max(args, key=lambda a: (a.end_lineno, a.end_col_offset))  # type: ignore[attr-defined]
        at = self.ctx.offset(last.end_lineno or 0, last.end_col_offset or 0)  # type: ignore[attr-defined]
        return Fix((Edit(at, at, ", weights_only=True"),), "unsafe")
