"""TS312 (opt-in): a host sync on every training step."""

from __future__ import annotations

import ast

from torchstyle.lint import facts
from torchstyle.lint.base import Rule, on_call
from torchstyle.lint.context import LoopFrame
from torchstyle.lint.registry import register

_SYNCS = frozenset({"item", "cpu", "numpy", "tolist"})


@register
class HostSyncInStep(Rule):
    """A host sync (``.item()``, ``.cpu()``, ``.numpy()``, ``.tolist()``) on every training step.

    What:
        In a loop that trains (its own body back-propagates or steps an optimizer), a
        ``.item()``, ``.cpu()``, ``.numpy()`` or ``.tolist()`` call that runs on every
        iteration (not under an ``if``). Off by default: a performance rule, and small
        models or CPU training do not care. Short fixed-length loops (``range(10)``) are
        left alone.

    Why:
        The GPU runs asynchronously: the Python loop queues kernels and races ahead. Each
        of these calls waits until the device has finished everything queued so far, so
        the next step's work cannot be queued while this one runs; on fast models the GPU
        idles between steps. Keep running sums on the device (``total += loss.detach()``)
        and read them every n steps.

    Example:
        for inputs, targets in loader:
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()

    Use instead:
        for step, (inputs, targets) in enumerate(loader):
            ...
            running_loss += loss.detach()
            if step % log_every == 0:
                print(running_loss.item() / (step + 1))
    """

    code = "TS312"
    name = "host-sync-in-step"
    message = "`.{method}()` waits for the GPU on every training step; read values every n steps"
    default_enabled = False

    @on_call(*_SYNCS)
    def call(self, node: ast.Call) -> None:
        """Notes an unguarded sync inside a loop."""
        loop = self.ctx.loop
        func = node.func
        if loop is None or self.ctx.guard_depth != loop.guard_base:
            return
        if isinstance(func, ast.Attribute) and func.attr in _SYNCS and not node.args:
            self.collect(node)

    def on_loop_exit(self, frame: LoopFrame) -> None:
        """Reports the syncs of a training-step loop."""
        found = self.settle(frame, frame.direct_step, through_guards=False)
        if found and facts.short_fixed_loop(frame.node):
            return
        for node in found:
            self.report(node, self.message.format(method=node.func.attr))
