"""TS301: logging, printing or saving images on every training step."""

from __future__ import annotations

import ast
import re

from torchstyle.lint import facts
from torchstyle.lint import vocabulary as vocab
from torchstyle.lint.base import Rule, on_call
from torchstyle.lint.context import FileContext, LoopFrame
from torchstyle.lint.registry import register

_CLOSURE_STEP = re.compile(r"\.step\(\s*closure\b")
_PROFILER_STEP = re.compile(r"\b(?:prof|profiler)\.step\(\)")


@register
class LogEveryStep(Rule):
    """Printing, logging or saving images on every step of a training loop.

    What:
        In a loop that trains (its own body calls ``.backward()`` or ``optimizer.step()``),
        a call that runs on every iteration, not under any ``if``: ``print``, a logger's
        ``info``/``warning``/..., a TensorBoard writer's ``add_scalar``/``add_image``/...,
        ``wandb.log``, ``mlflow.log_metric``, or an image written with ``save_image``,
        ``plt.savefig``, ``cv2.imwrite``... tqdm progress bars are fine, and so are short
        fixed-length loops (``for step in range(10)``, at most 100 steps: benchmarks and
        profiling runs show every step on purpose), benchmark and profiling scripts (a file
        named ``bench*``/``profil*``, or one that calls ``prof.step()``), loops stepped with a
        closure (``optimizer.step(closure)``: LBFGS takes few, expensive steps) and
        ``logger.debug``.

    Why:
        The guide: "don't log results on every step". Training runs thousands of steps;
        every log reads loss values off the GPU (a sync that stalls the pipeline), and
        writing images is expensive. Logging every n steps gives the same curves.

    Example:
        for step, (inputs, targets) in enumerate(loader):
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
            writer.add_scalar("train/loss", loss.item(), step)

    Use instead:
        if step % log_every == 0:
            writer.add_scalar("train/loss", loss.item(), step)
    """

    code = "TS301"
    name = "log-every-step"
    message = "{what} on every training step; do it every n steps (`if step % n == 0:`)"

    def _what(self, node: ast.Call) -> str | None:
        func = node.func
        if isinstance(func, ast.Name):
            if func.id == "print" and "print" not in self.ctx.imports:
                return "printing"
        elif isinstance(func, ast.Attribute):
            attr = func.attr
            if attr in vocab.IMAGE_METHODS:
                return "logging an image"
            if attr in vocab.TRACKER_METHODS:
                return "logging"
            # debug output is off unless asked for: per-step debug lines are deliberate
            if attr != "debug" and vocab.is_logger_call(func):
                return "logging"
        else:
            return None
        qualname = self.ctx.qualname(func)
        if qualname in vocab.IMAGE_FUNCTIONS:
            return "saving an image"
        if qualname in vocab.TRACKER_FUNCTIONS:
            return "logging"
        return None

    def begin_file(self, ctx: FileContext) -> None:
        """Notes whether the file is a benchmark or profiling script."""
        super().begin_file(ctx)
        name = ctx.path.replace("\\", "/").rsplit("/", 1)[-1].lower()
        # a profiler stepped with the loop (prof.step()) profiles it, step by step
        self._benchmark = name.startswith(("bench", "profil")) or bool(
            _PROFILER_STEP.search(ctx.source)
        )

    @on_call(
        "print",
        *vocab.LOG_METHODS,
        *vocab.TRACKER_METHODS,
        *vocab.IMAGE_METHODS,
        *vocab.last_names(vocab.IMAGE_FUNCTIONS | vocab.TRACKER_FUNCTIONS),
    )
    def call(self, node: ast.Call) -> None:
        """Notes an unguarded log call inside a loop."""
        loop = self.ctx.loop
        if loop is None or self.ctx.guard_depth != loop.guard_base:
            return
        what = self._what(node)
        if what is not None:
            self.collect((node, what))

    def on_loop_exit(self, frame: LoopFrame) -> None:
        """Reports the calls of a training-step loop; passes others outwards when unguarded."""
        found = self.settle(frame, frame.direct_step, through_guards=False)
        if found and (self._benchmark or facts.short_fixed_loop(frame.node)):
            return  # for step in range(10): a benchmark or profiling loop shows every step
        if found and _CLOSURE_STEP.search(self.ctx.text(frame.node)):
            return  # optimizer.step(closure) (LBFGS): few, expensive steps
        for node, what in found:
            self.report(node, self.message.format(what=what.capitalize()))
