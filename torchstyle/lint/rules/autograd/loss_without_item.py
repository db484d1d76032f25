"""TS202: a tensor loss printed, logged or formatted without ``.item()``."""

from __future__ import annotations

import ast

from torchstyle.lint import vocabulary as vocab
from torchstyle.lint.base import Rule, on, on_call
from torchstyle.lint.context import Binding, FileContext
from torchstyle.lint.registry import register

_TRACKED = "handed to a tracker"
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div)


@register
class LossWithoutItem(Rule):
    """A loss tensor printed, logged, handed to a tracker or formatted without ``.item()``.

    What:
        A name holding a loss that is still a tensor (it was backpropagated, or it comes
        from a loss function) passed to ``print``, a logger, an experiment tracker
        (``writer.add_scalar``, ``wandb.log({...})``, ``mlflow.log_metric``,
        ``logger.log_metrics``), a tqdm bar's ``set_postfix``/``set_description``, an
        f-string, ``str.format``, ``%`` or ``str()``.
        Once the name is rebound to ``loss.item()`` or ``float(loss)`` it is a number and
        left alone.

    Why:
        The guide: "use .item() to print a scalar tensor". Formatting the tensor prints
        ``tensor(0.6931, device='cuda:0', grad_fn=<NllLossBackward0>)`` instead of a number,
        and it keeps the tensor (and its graph) alive for as long as the text is built.
        Trackers want numbers: given a tensor, each converts it in its own way, a device
        sync hidden inside the logging call;
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
    message = "tensor loss `{name}` {how} without `.item()`; use `{name}.item()`"
    fixable = "unsafe"
    triggers = ("backward", "loss", "criterion")

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the deferred candidates."""
        super().begin_file(ctx)
        self.deferred: list[tuple[ast.Name, Binding, bool, str]] = []

    def _add(self, node: ast.expr, fixable: bool = True, how: str = "formatted") -> None:
        if isinstance(node, ast.Name):
            binding = self.ctx.binding(node.id)
            if binding is not None:
                self.deferred.append((node, binding, fixable, how))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, _ARITHMETIC):
            self._add(node.left, False, how)
            self._add(node.right, False, how)

    def _add_all(self, nodes: list[ast.expr], how: str = "formatted") -> None:
        for node in nodes:
            self._add(node.value if isinstance(node, ast.Starred) else node, how=how)

    @on_call(
        "print",
        "str",
        "format",
        *vocab.LOG_METHODS,
        *vocab.PROGRESS_METHODS,
        *vocab.TRACKER_METHODS,
        *vocab.last_names(vocab.TRACKER_FUNCTIONS),
    )
    def call(self, node: ast.Call) -> None:
        """Checks print, loggers, trackers, progress bars, ``format`` and ``str``."""
        func = node.func
        values = [*node.args, *(kw.value for kw in node.keywords if kw.arg is not None)]
        if isinstance(func, ast.Name):
            if func.id in ("print", "str") and func.id not in self.ctx.imports:
                self._add_all(values)
            elif self.ctx.qualname(func) in vocab.TRACKER_FUNCTIONS:
                self._add_all(_dict_values(values), _TRACKED)
            return
        if not isinstance(func, ast.Attribute):
            return
        attr = func.attr
        if (
            (
                attr == "format"
                and isinstance(func.value, ast.Constant)
                and isinstance(func.value.value, str)
            )
            or attr in vocab.PROGRESS_METHODS
            or vocab.is_logger_call(func)
        ):
            self._add_all(values)
        elif attr in vocab.TRACKER_METHODS or self.ctx.qualname(func) in vocab.TRACKER_FUNCTIONS:
            self._add_all(_dict_values(values), _TRACKED)

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
        for node, binding, fixable, how in self.deferred:
            if id(node) in seen or not ctx.is_loss(binding):
                continue
            seen.add(id(node))
            fix = ctx.append_to(node, ".item()", "unsafe") if fixable else None
            self.report(node, self.message.format(name=node.id, how=how), fix)


def _dict_values(values: list[ast.expr]) -> list[ast.expr]:
    """``values`` with the values of dict displays in place of the dicts (``wandb.log({...})``)."""
    out: list[ast.expr] = []
    for value in values:
        if isinstance(value, ast.Dict):
            out += value.values
        else:
            out.append(value)
    return out
