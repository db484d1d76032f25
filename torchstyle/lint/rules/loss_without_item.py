"""TS202: a tensor loss printed, logged or formatted without ``.item()``."""

from __future__ import annotations

import ast
import re

from torchstyle.lint.base import Rule, on, on_call
from torchstyle.lint.context import Binding, FileContext
from torchstyle.lint.registry import register

_LOG_METHODS = frozenset(
    {"debug", "info", "warning", "warn", "error", "critical", "exception", "log"}
)
_LOGGER = re.compile(r"log", re.IGNORECASE)
_PROGRESS_METHODS = frozenset({"set_postfix", "set_description", "set_postfix_str", "write"})
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div)


@register
class LossWithoutItem(Rule):
    """A loss tensor printed, logged or formatted without ``.item()``.

    What:
        A name holding a loss that is still a tensor (it was backpropagated, or it comes
        from a loss function) passed to ``print``, a logger, a tqdm bar's
        ``set_postfix``/``set_description``, an f-string, ``str.format``, ``%`` or ``str()``.
        Once the name is rebound to ``loss.item()`` or ``float(loss)`` it is a number and
        left alone.

    Why:
        The guide: "use .item() to print a scalar tensor". Formatting the tensor prints
        ``tensor(0.6931, device='cuda:0', grad_fn=<NllLossBackward0>)`` instead of a number,
        and it keeps the tensor (and its graph) alive for as long as the text is built;
        ``.item()`` gives a Python float. (Log every n steps, not every step: ``.item()``
        waits for the GPU.)

    Example:
        loss = criterion(output, target)
        loss.backward()
        print(f"epoch {epoch}: loss {loss}")

    Use instead:
        print(f"epoch {epoch}: loss {loss.item():.4f}")

    Fix:
        Unsafe (``.item()`` raises for a loss with more than one element): appends
        ``.item()`` to the name.
    """

    code = "TS202"
    name = "loss-without-item"
    message = "tensor loss `{name}` formatted without `.item()`; use `{name}.item()`"
    fixable = "unsafe"
    triggers = ("backward", "loss", "criterion")

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the deferred candidates."""
        super().begin_file(ctx)
        self.deferred: list[tuple[ast.Name, Binding, bool]] = []

    def _add(self, node: ast.expr, fixable: bool = True) -> None:
        if isinstance(node, ast.Name):
            binding = self.ctx.binding(node.id)
            if binding is not None:
                self.deferred.append((node, binding, fixable))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, _ARITHMETIC):
            self._add(node.left, False)
            self._add(node.right, False)

    def _add_all(self, nodes: list[ast.expr]) -> None:
        for node in nodes:
            self._add(node.value if isinstance(node, ast.Starred) else node)

    @on_call("print", "str", "format", *_LOG_METHODS, *_PROGRESS_METHODS)
    def call(self, node: ast.Call) -> None:
        """Checks print, loggers, progress bars, ``format`` and ``str``."""
        func = node.func
        values = [*node.args, *(kw.value for kw in node.keywords if kw.arg is not None)]
        if isinstance(func, ast.Name):
            if func.id in ("print", "str") and func.id not in self.ctx.imports:
                self._add_all(values)
            return
        if not isinstance(func, ast.Attribute):
            return
        attr = func.attr
        if (
            attr == "format"
            and isinstance(func.value, ast.Constant)
            and isinstance(func.value.value, str)
        ):
            self._add_all(values)
        elif attr in _LOG_METHODS:
            receiver = func.value
            name = (
                receiver.attr
                if isinstance(receiver, ast.Attribute)
                else getattr(receiver, "id", "")
            )
            if _LOGGER.search(name):
                self._add_all(values)
        elif attr in _PROGRESS_METHODS:
            self._add_all(values)

    @on(ast.FormattedValue)
    def formatted(self, node: ast.FormattedValue) -> None:
        """Checks ``f"{loss}"``."""
        self._add(node.value)

    @on(ast.BinOp)
    def percent(self, node: ast.BinOp) -> None:
        """Checks ``"%f" % loss``."""
        left = node.left
        if (
            isinstance(node.op, ast.Mod)
            and isinstance(left, ast.Constant)
            and isinstance(left.value, str)
        ):
            right = node.right
            self._add_all(right.elts if isinstance(right, ast.Tuple) else [right])

    def end_file(self) -> None:
        """Reports the names that turned out to hold loss tensors."""
        ctx = self.ctx
        seen: set[int] = set()
        for node, binding, fixable in self.deferred:
            if id(node) in seen or not ctx.is_loss(binding):
                continue
            seen.add(id(node))
            fix = ctx.append_to(node, ".item()", "unsafe") if fixable else None
            self.report(node, self.message.format(name=node.id), fix)
