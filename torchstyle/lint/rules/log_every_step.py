"""TS301: logging, printing or saving images on every training step."""

from __future__ import annotations

import ast
import re

from torchstyle.lint.base import Rule, on_call
from torchstyle.lint.context import LoopFrame
from torchstyle.lint.registry import register

_LOG_METHODS = frozenset({"info", "warning", "warn", "error", "critical", "exception", "log"})
_LOGGER = re.compile(r"log", re.IGNORECASE)
_WRITER_METHODS = frozenset(
    {"add_scalar", "add_scalars", "add_histogram", "add_text", "add_pr_curve"}
    | {"log_metric", "log_metrics"}
)
_IMAGE_METHODS = frozenset(
    {"add_image", "add_images", "add_figure", "add_video", "add_mesh", "log_image"}
)
_IMAGE_FUNCTIONS = frozenset(
    {
        "torchvision.utils.save_image",
        "cv2.imwrite",
        "imageio.imwrite",
        "imageio.imsave",
        "imageio.v2.imwrite",
        "imageio.v3.imwrite",
        "matplotlib.pyplot.savefig",
        "matplotlib.pyplot.imsave",
        "skimage.io.imsave",
    }
)
_LOG_FUNCTIONS = frozenset({"wandb.log", "mlflow.log_metric", "mlflow.log_metrics"})


@register
class LogEveryStep(Rule):
    """Printing, logging or saving images on every step of a training loop.

    What:
        In a loop that trains (its own body calls ``.backward()`` or ``optimizer.step()``),
        a call that runs on every iteration, not under any ``if``: ``print``, a logger's
        ``info``/``warning``/..., a TensorBoard writer's ``add_scalar``/``add_image``/...,
        ``wandb.log``, ``mlflow.log_metric``, or an image written with ``save_image``,
        ``plt.savefig``, ``cv2.imwrite``... tqdm progress bars are fine.

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
            if attr in _IMAGE_METHODS:
                return "logging an image"
            if attr in _WRITER_METHODS:
                return "logging"
            if attr in _LOG_METHODS:
                receiver = func.value
                name = (
                    receiver.attr
                    if isinstance(receiver, ast.Attribute)
                    else getattr(receiver, "id", "")
                )
                if _LOGGER.search(name):
                    return "logging"
        else:
            return None
        qualname = self.ctx.qualname(func)
        if qualname in _IMAGE_FUNCTIONS:
            return "saving an image"
        if qualname in _LOG_FUNCTIONS:
            return "logging"
        return None

    @on_call(
        "print",
        *_LOG_METHODS,
        *_WRITER_METHODS,
        *_IMAGE_METHODS,
        *{q.rsplit(".", 1)[1] for q in _IMAGE_FUNCTIONS | _LOG_FUNCTIONS},
    )
    def call(self, node: ast.Call) -> None:
        """Notes an unguarded log call inside a loop."""
        loop = self.ctx.loop
        if loop is None or self.ctx.guard_depth != loop.guard_base:
            return
        what = self._what(node)
        if what is not None:
            loop.data.setdefault(self.code, []).append((node, what))

    def on_loop_exit(self, frame: LoopFrame) -> None:
        """Reports the calls of a training-step loop; passes others outwards when unguarded."""
        found = frame.data.pop(self.code, None)
        if not found:
            return
        if frame.direct_step:
            for node, what in found:
                self.report(node, self.message.format(what=what.capitalize()))
        elif frame.parent is not None and frame.guard_base == frame.parent.guard_base:
            frame.parent.data.setdefault(self.code, []).extend(found)
