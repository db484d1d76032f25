"""TS305: evaluation or inference without ``model.eval()``."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from torchstyle.lint import facts
from torchstyle.lint.base import Rule, on, on_call
from torchstyle.lint.context import KIND_MODULE, FileContext, LoopFrame, Scope
from torchstyle.lint.registry import register


@dataclass
class _State:
    evals: bool = False
    trains: bool = False
    loads: bool = False
    loops: list[tuple[ast.For, str]] = field(default_factory=list)
    inference: list[ast.Call] = field(default_factory=list)


@register
class EvalWithoutEvalMode(Rule):
    """Evaluation or inference with the network still in training mode.

    What:
        In one function (or at module level) that has no ``.eval()`` (nor ``.train(False)``)
        call at all:

        * code that trains (``.backward()``, ``optimizer.step()`` or ``model.train()``) and
          also an evaluation loop (over ``val_loader``/``test_loader``/..., calling a
          network, without ``.backward()``);
        * or a network called under ``torch.no_grad()`` after ``load_state_dict(...)``
          (inference with restored weights).

    Why:
        ``model.train()`` is the default mode. In it, dropout still drops activations and
        batch norm normalizes with the statistics of the current batch (and keeps updating
        its running averages with evaluation data): evaluation numbers are noisy and wrong,
        and the model changes while it is being evaluated. ``torch.no_grad()`` does not
        switch modes; only ``model.eval()`` does.

    Example:
        for epoch in range(epochs):
            model.train()
            for inputs, targets in train_loader:
                ...
                loss.backward()
            with torch.no_grad():
                for inputs, targets in val_loader:
                    val_loss += criterion(model(inputs), targets).item()

    Use instead:
            model.eval()
            with torch.no_grad():
                for inputs, targets in val_loader:
                    val_loss += criterion(model(inputs), targets).item()
    """

    code = "TS305"
    name = "eval-without-eval-mode"
    message = "evaluation loop {what} runs the network in training mode; call `model.eval()` first"

    def begin_file(self, ctx: FileContext) -> None:
        """Notes whether the file uses a test framework."""
        super().begin_file(ctx)
        self.test_framework = ctx.imports_any("pytest", "unittest")

    def _state(self) -> _State:
        scope = self.ctx.function or self.ctx.scope
        state = scope.data.get(self.code)
        if state is None:
            state = scope.data[self.code] = _State()
        return state

    @on_call("eval", "train", "load_state_dict")
    def mode(self, node: ast.Call) -> None:
        """Notes mode switches and weight loading."""
        mode = facts.mode_call(node)
        if mode == "eval":
            self._state().evals = True
        elif mode == "train":
            self._state().trains = True
        elif isinstance(node.func, ast.Attribute) and node.func.attr == "load_state_dict":
            self._state().loads = True

    @on(ast.Call)
    def call(self, node: ast.Call) -> None:
        """Notes networks called with autograd off."""
        if self.ctx.grad_off_depth and node.args:
            kind, _ = self.ctx.expr_kind(node.func)
            if kind == KIND_MODULE:
                self._state().inference.append(node)

    def on_loop_exit(self, frame: LoopFrame) -> None:
        """Keeps evaluation loops."""
        what = self.ctx.evaluation_loop(frame, self.test_framework)
        if what is not None:
            self._state().loops.append((frame.node, what))  # type: ignore[arg-type]

    def on_scope_exit(self, scope: Scope) -> None:
        """Reports when the scope never switches to evaluation mode."""
        state = scope.data.get(self.code)
        if state is None or state.evals:
            return
        if scope.has_step or state.trains:
            for node, what in state.loops:
                self.report(node, self.message.format(what=what), end=node.iter)
        elif state.loads and state.inference:
            node = state.inference[0]
            self.report(
                node,
                "network called for inference after `load_state_dict` without `model.eval()`; "
                "dropout and batch norm are still in training mode",
            )
