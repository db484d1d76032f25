"""TS310: ``scheduler.step()`` before ``optimizer.step()`` in the same iteration."""

from __future__ import annotations

import ast
import re

from torchstyle.lint import facts
from torchstyle.lint.base import Edit, Fix, Rule, on_call
from torchstyle.lint.context import FileContext, LoopFrame
from torchstyle.lint.registry import register
from torchstyle.lint.semantic import target_key

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

    Fix:
        Unsafe (the schedule then runs one step later, as intended): moves the
        ``scheduler.step()`` line to just after the ``optimizer.step()`` line, when both are
        statements of their own in the same block.
    """

    code = "TS310"
    name = "scheduler-before-optimizer"
    message = (
        "`{sched}()` runs before `optimizer.step()` in the same iteration: the schedule is "
        "one step ahead; step the scheduler after the optimizer"
    )
    fixable = "unsafe"
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
        stepped = self._stepped(node)
        frame: LoopFrame | None = loop
        while frame is not None:  # a scheduler earlier in this loop or one around it
            waiting = self.pending.pop(id(frame), [])
            for sched in list(waiting):
                assert isinstance(sched.func, ast.Attribute)
                own = self.ctx.semantic.scheduler_optimizer(sched.func.value)
                if own is not None and stepped is not None and not _same(own, stepped):
                    continue  # another optimizer's step: each scheduler has its own
                waiting.remove(sched)
                message = self.message.format(sched=self.ctx.text(sched.func))
                self.report(sched, message, self._fix(sched, node))
            if waiting:
                self.pending[id(frame)] = waiting
            frame = frame.parent

    @staticmethod
    def _stepped(node: ast.Call) -> str | None:
        """The optimizer a step call steps: ``opt`` in ``opt.step()`` and ``scaler.step(opt)``."""
        func = node.func
        assert isinstance(func, ast.Attribute)
        if node.args and "scal" in (facts.last_name(func.value) or "").lower():
            return target_key(node.args[0])
        return target_key(func.value)

    def _fix(self, sched: ast.Call, step: ast.Call) -> Fix | None:
        """Moves the scheduler's line to just after the optimizer's, in the same block."""
        ctx = self.ctx
        lines = ctx.lines
        first, last = sched.lineno, step.lineno
        if (
            sched.end_lineno != first
            or step.end_lineno != last
            or sched.col_offset != step.col_offset
        ):
            return None
        if _code(lines[first - 1]) != ctx.text(sched) or _code(lines[last - 1]) != ctx.text(step):
            return None  # not statements of their own
        indent = sched.col_offset
        for line in lines[first : last - 1]:
            if line.strip() and len(line) - len(line.lstrip()) < indent:
                return None  # the two are in different blocks
        start = ctx.offset(first, 0)
        after_step = ctx.offset(last + 1, 0) if last < len(lines) else len(ctx.source)
        if after_step == len(ctx.source) and not ctx.source.endswith("\n"):
            return None
        moved = lines[first - 1] + "\n"
        return Fix(
            (Edit(start, ctx.offset(first + 1, 0), ""), Edit(after_step, after_step, moved)),
            "unsafe",
        )

    def on_loop_exit(self, frame: LoopFrame) -> None:
        """Forgets the scheduler steps of a finished loop."""
        self.pending.pop(id(frame), None)


def _same(a: str, b: str) -> bool:
    """Whether two keys name the same object (``self.opt`` here, ``opt`` there counts)."""
    return a == b or a.rsplit(".", 1)[-1] == b.rsplit(".", 1)[-1]


def _code(line: str) -> str:
    """A line without its indentation and trailing comment."""
    return line.split("#", 1)[0].strip()
