"""TS102: ``module.forward(x)`` instead of ``module(x)``."""

from __future__ import annotations

import ast
import re

from torchstyle.lint import facts
from torchstyle.lint.base import Edit, Fix, Rule, on_call
from torchstyle.lint.registry import register

_ATTRIBUTE = re.compile(r"[\s)]*\.\s*forward")
#: ``x().forward(...)`` where ``x()`` is not the module itself: ``super()``, RPC proxies.
_FRAMEWORKS = ("torch", "lightning", "pytorch_lightning", "timm", "torchvision", "transformers")
_PROXIES = frozenset({"super", "rpc_sync", "rpc_async", "remote"})
#: Methods that implement calling the module: there, ``self.forward`` is the point.
_CALL_IMPLEMENTATIONS = frozenset({"__call__", "_call_impl", "_wrapped_call_impl"})


def _last_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else None


@register
class ForwardCall(Rule):
    """``module.forward(x)`` called directly instead of ``module(x)``.

    What:
        A call of ``.forward(...)`` with at least one argument on anything but ``super()``.
        Calls of a base class's ``forward`` inside a subclass (``Base.forward(self, x)``),
        ``self.forward`` inside a ``__call__`` override and calls through RPC proxies
        (``rref.rpc_sync().forward(x)``) are left alone, as are ``self.forward(x)`` in a class
        with no base (not a module) and, in a file that imports no torch, receivers not named
        like a network (``browser.forward(steps)``), ``remote_module.forward(x)`` (the way to
        call an RPC ``RemoteModule``) and calls under a comment line (within three lines above) that
        mentions ``__call__`` or hooks: skipping them on purpose, said so.

    Why:
        The guide: "use the call method instead of forward on an nn.Module"; the two are not
        the same. ``module(x)`` runs ``__call__``, which runs the forward pre-hooks and hooks
        (used by DataParallel/DDP, quantization, pruning, profilers, ``torch.compile`` and
        tools that capture activations) around ``forward``; ``module.forward(x)`` skips them
        silently.

    Example:
        output = self.net.forward(input)

    Use instead:
        output = self.net(input)

    Fix:
        Safe: removes ``.forward``.
    """

    code = "TS102"
    name = "forward-call"
    message = (
        "call the module (`m(x)`) instead of `m.forward(x)`: forward() skips the module's hooks"
    )
    fixable = "safe"
    triggers = (".forward",)

    @on_call("forward")
    def call(self, node: ast.Call) -> None:
        """Checks one call."""
        func = node.func
        if not isinstance(func, ast.Attribute) or func.attr != "forward":
            return
        if not node.args and not node.keywords:
            return  # e.g. a browser's .forward(): not a module call
        receiver = func.value
        if isinstance(receiver, ast.Call) and _last_name(receiver.func) in _PROXIES:
            return  # super().forward(x); rref.rpc_sync().forward(x) on a remote module
        if not self.ctx.imports_any(*_FRAMEWORKS) and not (
            (name := facts.last_name(receiver)) is not None and facts.is_model_name(name)
        ):
            return  # a file without torch: only a receiver named like a network counts
        receiver_is_self = isinstance(receiver, ast.Name) and receiver.id == "self"
        if receiver_is_self:
            info = self.ctx.current_class()
            if info is not None and not info.is_module and (info.plain or not info.node.bases):
                return  # self.forward(x) in a plain class (bases followed across files)
        elif self.ctx.value_type(receiver) is False:
            return  # p.forward(x) where p is annotated or built as a plain class
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Name) and first.id == "self" and not receiver_is_self:
            return  # Base.forward(self, x): an explicit base-class call
        scope = self.ctx.function
        if receiver_is_self and scope is not None and scope.name in _CALL_IMPLEMENTATIONS:
            return
        if "remote" in (facts.last_name(receiver) or "").lower():
            return  # RemoteModule.forward(x) is how a remote module is called
        if self._explained(node.lineno):
            return  # a comment just above says the hooks are skipped on purpose
        self.report(node, fix=self._fix(func))

    def _explained(self, line: int) -> bool:
        """Whether a comment line among the three above ``line`` is about ``__call__`` or hooks."""
        lines = self.ctx.lines
        for text in lines[max(0, line - 4) : line - 1]:
            comment = text.strip()
            if comment.startswith("#") and ("__call__" in comment or "hook" in comment.lower()):
                return True
        return False

    def _fix(self, func: ast.Attribute) -> Fix | None:
        ctx = self.ctx
        start = ctx.offset(func.value.end_lineno or 0, func.value.end_col_offset or 0)
        end = ctx.offset(func.end_lineno or 0, func.end_col_offset or 0)
        text = ctx.source[start:end]
        if not _ATTRIBUTE.fullmatch(text):
            return None  # a comment in between: leave it to the user
        dot = text.rindex(".")
        return Fix((Edit(start + dot, end, ""),), "safe")
