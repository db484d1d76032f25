"""TS201: ``.data`` on a tensor."""

from __future__ import annotations

import ast

from torchstyle.lint import facts
from torchstyle.lint.base import Edit, Fix, Rule, on, on_call
from torchstyle.lint.context import KIND_LOSS, KIND_TENSOR, Binding, FileContext
from torchstyle.lint.registry import register
from torchstyle.lint.semantic import is_init_call

_TENSOR_ATTRS = frozenset({"weight", "bias", "grad"})
#: Functions that write into their first argument in place (collectives, ``torch.*(out=)``).
_IN_PLACE_CALLS = frozenset(
    {"all_reduce", "broadcast", "reduce", "all_gather", "reduce_scatter", "all_to_all", "recv"}
)
#: Reads of a tensor's metadata through ``.data``: no value flows anywhere.
_METADATA = frozenset(
    {"dtype", "device", "shape", "size", "dim", "ndim", "is_cuda", "type", "numel", "layout"}
)


@register
class TensorData(Rule):
    """``.data`` read from a tensor.

    What:
        ``x.data`` where ``x`` is certainly a tensor: a parameter (``m.weight``, ``m.bias``,
        a loop variable over ``model.parameters()``), a gradient (``p.grad``), a loss that is
        backpropagated, a network's output or a ``torch`` factory result. Writes through
        ``.data`` are left alone, as initialization code uses them on purpose: assigning to
        ``p.data`` (and reading the value assigned: ``a.data = b.data.clone()``), in-place
        methods (``w.data.normal_()``, ``p.data.copy_(q.data.view(s))``), in-place functions
        (``nn.init.trunc_normal_(p.data)``), ``w.data[i] = v``, collectives that write in place
        (``dist.all_reduce(p.grad.data)``), initialisers whatever their spelling
        (``torch.nn.init.*``, ``weight_init(m.weight.data)``, the file's own
        ``def xavier(p): init.xavier_uniform(p)``) and a name bound to ``.data`` that
        is then written in place (``w = layer.weight.data; init_(w.view(n, -1))``); so are
        metadata reads (``x.data.dtype``, ``.device``, ``.size()``,
        ``isinstance(x.data, ...)``) and ``.data`` on other
        objects (``dataset.data``).

    Why:
        ``.data`` is the pre-0.4 way to reach a Variable's tensor. It returns the tensor
        without telling autograd: in-place changes through it are not tracked, so a backward
        pass can silently compute wrong gradients instead of raising an error. The guide
        recommends ``.detach()`` (or ``.item()`` for a Python number) instead.

    Example:
        _, predicted = torch.max(outputs.data, 1)
        ema = p.data.clone()

    Use instead:
        _, predicted = torch.max(outputs.detach(), 1)
        ema = p.detach().clone()

    Fix:
        Unsafe (in-place writes through ``.detach()`` are checked by autograd): replaces
        ``.data`` with ``.detach()``.
    """

    code = "TS201"
    name = "tensor-data"
    message = "`.data` bypasses autograd's checks; use `.detach()` (or `.item()` for a number)"
    fixable = "unsafe"
    triggers = (".data",)

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the deferred candidates."""
        super().begin_file(ctx)
        self.deferred: list[tuple[ast.Attribute, Binding]] = []
        self.pending: list[ast.Attribute] = []
        #: calls handing ``.data`` to a function that may be the file's own initialiser
        self.maybe_writes: list[tuple[str, ast.Call]] = []
        self.torch = False
        self.writes: set[int] = set()
        #: ``w = layer.weight.data``: the ``.data`` node, by (function, name)
        self.aliases: dict[tuple[int, str], list[ast.Attribute]] = {}

    @on_call("isinstance", "type")
    def metadata_call(self, node: ast.Call) -> None:
        """Notes ``isinstance(x.data, torch.cuda.FloatTensor)``: a type check, not a read."""
        if node.args and _is_data(node.args[0]):
            self.writes.add(id(node.args[0]))

    @on(ast.Call)
    def write_call(self, node: ast.Call) -> None:
        """Notes ``.data`` written in place: ``w.data.normal_()``, ``init.zeros_(p.data)``."""
        func = node.func
        name = facts.last_name(func)
        if name in _IN_PLACE_CALLS and node.args:
            self._copy_source(node.args[0])  # dist.all_reduce(p.grad.data): written in place
            return
        if name is not None and any(_is_data(a) for a in node.args):
            if is_init_call(node, self.ctx.qualname):
                for arg in node.args:  # weight_init(m.weight.data), init.xavier_uniform(w.data)
                    self._copy_source(arg)
                return
            self.maybe_writes.append((name, node))  # xavier(m.weight.data): the file decides
        if name is None or not name.endswith("_") or name.startswith("__"):
            return
        if isinstance(func, ast.Attribute) and _is_data(func.value):
            self.writes.add(id(func.value))
        for arg in node.args:  # p.data.copy_(q.data.view(s)), nn.init.trunc_normal_(p.data)
            self._copy_source(arg)
        receivers = [func.value] if isinstance(func, ast.Attribute) else []
        for arg in [*receivers, *node.args]:  # w = m.weight.data; init_(w.view(...))
            for sub in ast.walk(arg):
                if isinstance(sub, ast.Name):
                    for data in self.aliases.pop((self._where(), sub.id), ()):
                        self.writes.add(id(data))

    @on(ast.Assign)
    def write_assign(self, node: ast.Assign) -> None:
        """Notes ``a.weight.data = b.weight.data.clone()``: copying parameters, on purpose."""
        if any(_is_data(target) for target in node.targets):
            self._copy_source(node.value)
        target = node.targets[0]
        if isinstance(target, ast.Name) and _is_data(node.value):
            assert isinstance(node.value, ast.Attribute)
            self.aliases.setdefault((self._where(), target.id), []).append(node.value)

    def _where(self) -> int:
        return id(self.ctx.scope)

    def _copy_source(self, node: ast.expr) -> None:
        for sub in ast.walk(node):
            if _is_data(sub):
                self.writes.add(id(sub))

    @on(ast.Subscript)
    def write_item(self, node: ast.Subscript) -> None:
        """Notes ``w.data[i] = v``."""
        if not isinstance(node.ctx, ast.Load) and _is_data(node.value):
            self.writes.add(id(node.value))

    @on(ast.Attribute)
    def attribute(self, node: ast.Attribute) -> None:
        """Checks ``<expr>.data`` in a load."""
        if node.attr in _METADATA and _is_data(node.value):
            self.writes.add(id(node.value))  # x.data.dtype, x.data.size(): metadata only
            return
        if node.attr != "data" or not isinstance(node.ctx, ast.Load) or id(node) in self.writes:
            return
        ctx = self.ctx
        receiver = node.value
        if isinstance(receiver, ast.Name):
            binding = ctx.binding(receiver.id)
            if binding is not None:
                self.deferred.append((node, binding))
            return
        if isinstance(receiver, ast.Attribute) and receiver.attr in _TENSOR_ATTRS:
            if ctx.imports_any("torch"):
                self.pending.append(node)
            return
        kind, _ = ctx.expr_kind(receiver)
        if kind in (KIND_TENSOR, KIND_LOSS):
            self.pending.append(node)

    def end_file(self) -> None:
        """Reports the names that turned out to hold tensors."""
        ctx = self.ctx
        for name, call in self.maybe_writes:
            if ctx.semantic.writes_argument(name):
                for arg in call.args:
                    self._copy_source(arg)
        pending = self.pending
        self.pending = []
        for node in pending:
            if id(node) not in self.writes:
                self.report(node, fix=self._fix(node))
        for node, binding in self.deferred:
            if id(node) in self.writes:
                continue
            if ctx.kind_of(binding) in (KIND_TENSOR, KIND_LOSS) or ctx.is_loss(binding):
                self.report(node, fix=self._fix(node))

    def _fix(self, node: ast.Attribute) -> Fix | None:
        ctx = self.ctx
        value = node.value
        start = ctx.offset(value.end_lineno or 0, value.end_col_offset or 0)
        end = ctx.offset(node.end_lineno or 0, node.end_col_offset or 0)
        if "".join(ctx.source[start:end].split()) != ".data":
            return None
        return Fix((Edit(start, end, ".detach()"),), "unsafe")


def _is_data(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "data"
