"""TS104: a host sync inside ``forward``."""

from __future__ import annotations

import ast

from torchstyle.lint import facts
from torchstyle.lint.base import Rule, after, on
from torchstyle.lint.context import KIND_MODULE, FileContext
from torchstyle.lint.registry import register

_SYNCS = frozenset({"item", "cpu"})


@register
class HostSyncInForward(Rule):
    """A host sync inside the ``forward`` of an ``nn.Module``: ``.item()``, ``.cpu()``, ``print``.

    What:
        Inside ``forward`` of an ``nn.Module`` subclass: ``x.item()``, ``x.cpu()`` or
        ``print(...)`` of a variable (a tensor, as far as the code tells; text, shapes and
        numbers are fine). ``.numpy()`` and ``.tolist()`` are TS101's.
        Off by default: a performance rule, and on real code most syncs in ``forward``
        feed data-dependent shapes on purpose. ``.item()`` handed straight to a call
        (``torch.arange(lengths.max().item())``) is left alone. Only modules that hold
        layers count (``self.conv = nn.Conv2d(...)``): transforms and
        metrics without layers often run on the CPU. Left alone: a ``forward`` decorated
        with ``@torch.no_grad()`` or a class named ``PostProcess...`` (post-processing that
        returns host results), ``return out.cpu()`` (handing the output to the host, as RPC
        needs), ``.item()`` on a tensor made on the host (``torch.rand(1).item()``), and
        branches that raise, assert or warn.

    Why:
        The guide keeps ``forward`` free of host code. The device runs asynchronously; each
        of these waits until it has finished everything queued so far, on every call of the
        model: the next kernels cannot be queued meanwhile, ``torch.compile`` breaks the
        graph there, and CUDA graphs cannot capture the model. Compute the value with
        tensor operations and keep it on the device.

    Example:
        def forward(self, x):
            scale = x.abs().max().item()
            return self.net(x / scale)

    Use instead:
        def forward(self, x):
            scale = x.abs().amax()
            return self.net(x / scale)
    """

    code = "TS104"
    name = "host-sync-in-forward"
    message = "`{what}` in `{where}` waits for the device on every call; keep it a tensor"
    triggers = ("forward",)
    # Off by default: on real code most syncs in forward feed data-dependent shapes on purpose
    # (arange(lengths.max().item())); a performance review opts in.
    default_enabled = False

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the error-branch stack."""
        super().begin_file(ctx)
        self.error_branches: list[ast.If] = []
        self.returned: set[int] = set()
        self.consumed: set[int] = set()

    @on(ast.Return)
    def returns(self, node: ast.Return) -> None:
        """Notes ``return out.cpu()``: the module hands its output to the host on purpose."""
        value = node.value
        if isinstance(value, ast.IfExp):
            self.returned.update((id(value.body), id(value.orelse)))
        elif value is not None:
            self.returned.add(id(value))

    def _forward(self) -> str | None:
        scope = self.ctx.function
        if scope is None or scope.name != "forward" or scope.grad_off:
            return None
        parent = scope.parent
        info = parent.class_info if parent is not None else None
        if info is None or not info.is_module or "postprocess" in info.name.lower():
            return None
        if KIND_MODULE not in info.attr_kinds.values():
            return None  # no layers: a transform or a metric, often run on the CPU
        return f"{info.name}.forward"

    def _tensor_like(self, node: ast.expr) -> bool:
        if isinstance(node, ast.JoinedStr):
            return any(
                isinstance(v, ast.FormattedValue) and self._tensor_like(v.value)
                for v in node.values
            )
        if not isinstance(node, ast.Name) or node.id == "self":
            return False
        return self.ctx.kind_of(self.ctx.binding(node.id)) != "number"

    @on(ast.If)
    def enter_if(self, node: ast.If) -> None:
        """Notes entering an error branch."""
        if self.error_branches or facts.reports_error(node.body):
            self.error_branches.append(node)

    @after(ast.If)
    def leave_if(self, node: ast.If) -> None:
        """Notes leaving it."""
        if self.error_branches and self.error_branches[-1] is node:
            self.error_branches.pop()

    @on(ast.Call)
    def call(self, node: ast.Call) -> None:
        """Checks one call."""
        for arg in node.args:  # arange(n.item()): an op that needs a Python number
            self.consumed.add(id(arg))
        if self.error_branches or id(node) in self.consumed:
            return
        func = node.func
        if isinstance(func, ast.Attribute):
            if func.attr not in _SYNCS or node.args or node.keywords:
                return
            if id(node) in self.returned or _made_on_host(func.value):
                return
            what = f".{func.attr}()"
        elif isinstance(func, ast.Name) and func.id == "print" and "print" not in self.ctx.imports:
            if not any(self._tensor_like(a) for a in node.args):
                return  # text, shapes and numbers sync nothing
            what = "print(...)"
        else:
            return
        where = self._forward()
        if where is not None:
            self.report(node, self.message.format(what=what, where=where))


def _made_on_host(node: ast.expr) -> bool:
    """Whether ``node`` is built from ``torch.rand(1)``-style factories given no device."""
    for sub in ast.walk(node):
        if (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and sub.func.attr in facts.TENSOR_FACTORIES
            and facts.last_name(sub.func.value) == "torch"
            and facts.keyword(sub, "device") is None
        ):
            return True
    return False
