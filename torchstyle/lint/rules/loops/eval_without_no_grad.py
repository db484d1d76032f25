"""TS304: evaluation without ``torch.no_grad()``/``torch.inference_mode()``."""

from __future__ import annotations

import ast

from torchstyle.lint import facts
from torchstyle.lint.base import Rule, on, on_call
from torchstyle.lint.context import FileContext, LoopFrame, Scope
from torchstyle.lint.registry import register


@register
class EvalWithoutNoGrad(Rule):
    """An evaluation loop that runs with autograd on.

    What:
        A loop that evaluates (it iterates over ``val_loader``/``test_loader``/... or sits
        in ``evaluate()``/``validate()``/``test()``/``predict()``), calls a network and
        never calls ``.backward()``, with no ``torch.no_grad()``/``torch.inference_mode()``
        (context manager or decorator) around or inside it. Flagged only where nobody else
        can have turned autograd off: at module level, in a function that also trains, or in
        an evaluation function that sets ``model.eval()`` itself and is not called under
        ``no_grad`` in the same file. A loop is judged by what it does, not by its
        function's name: one that calls a function of the file that trains (``train(...)``
        in ``eval_linear()``), or that iterates over training data, is training; a function
        whose every call in the file is made with autograd off (a ``@torch.no_grad()``
        caller, a ``with torch.no_grad():`` block) runs with it off.

    Why:
        Without it, every forward pass records the autograd graph and keeps every
        intermediate activation alive for a backward pass that never comes: evaluation uses
        several times the memory it needs (larger batches run out of memory) and runs
        slower.

    Example:
        model.eval()
        for inputs, targets in val_loader:
            correct += (model(inputs).argmax(1) == targets).sum().item()

    Use instead:
        model.eval()
        with torch.no_grad():   # or torch.inference_mode()
            for inputs, targets in val_loader:
                correct += (model(inputs).argmax(1) == targets).sum().item()
    """

    code = "TS304"
    name = "eval-without-no-grad"
    message = "evaluation loop {what} runs with autograd on; wrap it in `with torch.no_grad():`"

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the candidates."""
        super().begin_file(ctx)
        self.candidates: list[tuple[ast.For, str, Scope | None]] = []
        self.called_without_grad: set[str] = set()
        self.sets_eval: set[int] = set()
        self.test_framework = ctx.imports_any("pytest", "unittest")

    @on_call("eval")
    def eval_call(self, node: ast.Call) -> None:
        """Notes ``.eval()`` calls."""
        if facts.mode_call(node) == "eval":
            scope = self.ctx.function
            if scope is not None:
                self.sets_eval.add(id(scope))

    @on(ast.Call)
    def call(self, node: ast.Call) -> None:
        """Notes the functions called with autograd off."""
        if self.ctx.grad_off_depth:
            name = facts.last_name(node.func)
            if name is not None:
                self.called_without_grad.add(name)

    def on_loop_exit(self, frame: LoopFrame) -> None:
        """Keeps evaluation loops that run with autograd on."""
        if frame.grad_off or frame.grad_off_inside:
            return
        what = self.ctx.evaluation_loop(frame, self.test_framework)
        if what is not None and what.startswith("in ") and _over_training_data(frame):
            return  # named like evaluation, but it iterates over the training data
        if what is not None:
            self.candidates.append((frame.node, what, self.ctx.function))  # type: ignore[arg-type]

    def end_file(self) -> None:
        """Reports the loops whose callers cannot have turned autograd off."""
        semantic = self.ctx.semantic
        for node, what, scope in self.candidates:
            if scope is not None and semantic.grad_off_by_callers(scope.name):
                continue  # every call of this function is made with autograd off
            if semantic.loop_trains(node):
                continue  # it calls a function of this file that trains: a training loop
            if (
                scope is not None
                and not scope.has_step
                and (scope.name in self.called_without_grad or id(scope) not in self.sets_eval)
            ):
                continue
            self.report(node, self.message.format(what=what), end=node.iter)


def _over_training_data(frame: LoopFrame) -> bool:
    """Whether a loop iterates over something named as training data (``train_loader``)."""
    return any(
        name.lower().startswith("train") or name.lower().endswith("train_loader")
        for name in frame.iter_names()
    )
