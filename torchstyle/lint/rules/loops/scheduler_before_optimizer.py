"""TS310: ``scheduler.step()`` before ``optimizer.step()`` in the same iteration."""

from __future__ import annotations

import ast
import re

from torchstyle.lint import facts
from torchstyle.lint.base import Rule, on_call
from torchstyle.lint.context import FileContext, LoopFrame
from torchstyle.lint.registry import register

_SCHEDULER = re.compile(r"sched", re.IGNORECASE)


@register
class SchedulerBeforeOptimizer(Rule):
    """``scheduler.step()`` called before ``optimizer.step()`` in the same loop iteration.

    What:
        In a loop, ``scheduler.step()`` (any receiver named like ``scheduler``/``sched``)
        followed, later in the same iteration, by ``optimizer.step()`` or
        ``scaler.step(optimizer)``.

    Why:
        Since PyTorch 1.1 a scheduler steps *after* the optimizer. Stepped first, it moves
        the learning rate before the update it was meant for: the first value of the
        schedule (the warm-up start, or the initial rate) is skipped, and every epoch runs
        one step ahead of the schedule. PyTorch warns about it at run time, once.

    Example:
        for inputs, targets in loader:
            scheduler.step()
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()

    Use instead:
        for inputs, targets in loader:
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
            scheduler.step()
    """

    code = "TS310"
    name = "scheduler-before-optimizer"
    message = (
        "`{sched}()` runs before `optimizer.step()` in the same iteration: the schedule is "
        "one step ahead; step the scheduler after the optimizer"
    )
    triggers = ("sched",)

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the pending scheduler steps."""
        super().begin_file(ctx)
        self.pending: dict[int, list[ast.Call]] = {}

    @on_call("step")
    def call(self, node: ast.Call) -> None:
        """Notes scheduler steps; reports them when an optimizer step follows."""
        func = node.func
        loop = self.ctx.loop
        if loop is None or not isinstance(func, ast.Attribute):
            return
        receiver = facts.last_name(func.value) or ""
        if _SCHEDULER.search(receiver):
            self.pending.setdefault(id(loop), []).append(node)
            return
        if not facts.is_optimizer_step(func):
            return
        frame: LoopFrame | None = loop
        while frame is not None:  # a scheduler earlier in this loop or one around it
            for sched in self.pending.pop(id(frame), ()):
                self.report(sched, self.message.format(sched=self.ctx.text(sched.func)))
            frame = frame.parent

    def on_loop_exit(self, frame: LoopFrame) -> None:
        """Forgets the scheduler steps of a finished loop."""
        self.pending.pop(id(frame), None)
