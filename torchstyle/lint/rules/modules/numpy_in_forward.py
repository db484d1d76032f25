"""TS101: numpy in the ``forward`` of an ``nn.Module``."""

from __future__ import annotations

import ast
import re

from torchstyle.lint import facts
from torchstyle.lint.base import Rule, after, on
from torchstyle.lint.context import KIND_MODULE, KIND_TENSOR, FileContext
from torchstyle.lint.registry import register
from torchstyle.lint.semantic import number_expr, pairs, single_values

_SHAPE_ATTRS = frozenset({"shape", "ndim"})
_SHAPE_METHODS = frozenset({"size", "dim", "numel"})
_LENGTHS = re.compile(r"len|size|shape|count|num_", re.IGNORECASE)
_INT_WRAPPERS = frozenset({"tuple", "list", "int"})
#: Libraries that take numpy arrays by design: data handed to them must leave torch.
_HOST_LIBRARIES = (
    "scipy.",
    "sklearn.",
    "cv2.",
    "pycocotools.",
    "skimage.",
    "PIL.",
    "matplotlib.",
    "networkx.",
    "faiss.",
    "lap.",
)
_NUMBER_ANNOTATIONS = frozenset({"int", "float", "bool"})


@register
class NumpyInForward(Rule):
    """numpy code inside the ``forward`` of an ``nn.Module`` subclass.

    What:
        Inside ``forward``: a call into numpy on tensor data (``np.exp(x)``, ``np.array(x)``,
        anything from ``np.random``), ``x.numpy()`` or ``x.tolist()``. ``.tolist()`` handed
        straight to an op that wants Python ints (``x.split(sizes.tolist())``,
        ``F.interpolate(x, size=tuple(size.tolist()))``) or bound to a name of lengths or sizes
        (``decode_lengths = lengths.tolist()``), classes named ``PostProcess...``, a
        ``forward`` decorated with
        ``@torch.no_grad()``/``inference_mode()`` or a project's own ``*_inference_mode``
        wrapper (post-processing or input conversion that hands out host data), numpy on
        plain numbers
        (``np.sqrt(self.dim)``, ``np.prod(x.shape[1:])``, also through names:
        ``hw = x.shape[1:3]; np.prod(hw)``, module-level constants such as ``d_k = 64``,
        ``math`` results, parameters annotated ``int``/``float``), code in
        a branch that raises, asserts or warns (building an error message), inference-only
        code (after ``if self.training: return losses``, under ``if not self.training:``)
        and data handed to a library that needs numpy (``linear_sum_assignment(c.numpy())``,
        scipy, sklearn, OpenCV, pycocotools, ...) are left alone.

    Why:
        The guide: "avoid numpy code in the forward of an nn.Module". numpy runs on the CPU,
        so each call copies the tensor off the GPU and waits for it; the result is outside
        autograd, so no gradient flows back through it; ``np.random`` is not seeded by
        ``torch.manual_seed``. torch has an equivalent for nearly every numpy function.

    Example:
        class Net(nn.Module):
            def forward(self, x):
                x = self.conv(x)
                return torch.from_numpy(np.tanh(x.detach().cpu().numpy()))

    Use instead:
        class Net(nn.Module):
            def forward(self, x):
                return torch.tanh(self.conv(x))
    """

    code = "TS101"
    name = "numpy-in-forward"
    message = "numpy in forward"
    #: Off by default: on held-out code half its findings were numpy on values that are not
    #: tensor data (helper results, numpy arrays), which the code alone does not tell apart.
    default_enabled = False
    triggers = ("forward",)

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the forward stack."""
        super().begin_file(ctx)
        self.stack: list[tuple[ast.AST, str]] = []
        self.error_branches: list[ast.If] = []
        self.consumed: set[int] = set()
        #: forward node -> first line of its inference-only tail (after ``if self.training:
        #: return``); branches under ``if not self.training:``
        self.inference_from: dict[int, int] = {}
        self.inference_branches: list[ast.If] = []
        self.assigned: dict[int, dict[str, list[ast.expr]]] = {}

    @on(ast.FunctionDef, ast.AsyncFunctionDef)
    def enter(self, node: ast.FunctionDef) -> None:
        """Notes entering the forward of a module class."""
        scope = self.ctx.scope
        info = scope.class_info
        if (
            node.name == "forward"
            and scope.kind == "class"
            and info is not None
            and info.is_module
            and "postprocess" not in info.name.lower()  # hands out host results by design
        ):
            self.stack.append((node, info.name))

    @after(ast.FunctionDef, ast.AsyncFunctionDef)
    def leave(self, node: ast.FunctionDef) -> None:
        """Notes leaving it."""
        if self.stack and self.stack[-1][0] is node:
            self.stack.pop()

    @on(ast.If)
    def enter_if(self, node: ast.If) -> None:
        """Notes entering an error branch (one that raises, asserts or warns), and the
        inference-only code of a forward (``if self.training: return losses`` ends
        training; what follows, and ``if not self.training:`` branches, only infer)."""
        if not self.stack:
            return
        if self.error_branches or facts.reports_error(node.body):
            self.error_branches.append(node)
        training = _training_test(node.test)
        if training is False:
            self.inference_branches.append(node)
        elif training is True and isinstance(node.body[-1], ast.Return) and not node.orelse:
            forward = id(self.stack[-1][0])
            self.inference_from.setdefault(forward, (node.end_lineno or node.lineno) + 1)

    @after(ast.If)
    def leave_if(self, node: ast.If) -> None:
        """Notes leaving it."""
        if self.error_branches and self.error_branches[-1] is node:
            self.error_branches.pop()
        if self.inference_branches and self.inference_branches[-1] is node:
            self.inference_branches.pop()

    def _inference_only(self, node: ast.AST) -> bool:
        if self.inference_branches:
            return True
        start = self.inference_from.get(id(self.stack[-1][0]))
        return start is not None and getattr(node, "lineno", 0) >= start

    @on(ast.Assign)
    def lengths(self, node: ast.Assign) -> None:
        """Notes ``lengths = sizes.tolist()``: Python ints for loops and packing, on purpose."""
        target = node.targets[0] if len(node.targets) == 1 else None
        value = node.value
        if (
            isinstance(target, ast.Name)
            and _LENGTHS.search(target.id)
            and isinstance(value, ast.Call)
            and facts.last_name(value.func) == "tolist"
        ):
            self.consumed.add(id(value))

    @on(ast.Call)
    def call(self, node: ast.Call) -> None:
        """Checks a call made inside forward."""
        if not self.stack or self.error_branches or self.ctx.grad_off:
            # not in forward, building an error message, or an inference-only forward
            # (post-processing, an input-converting wrapper) that hands out host data
            return
        if self._inference_only(node):
            return  # after `if self.training: return ...`: inference post-processing
        where = f"{self.stack[-1][1]}.forward"
        func = node.func
        qualname = self.ctx.qualname(func)
        if qualname is not None and qualname.startswith(_HOST_LIBRARIES):
            for arg in [*node.args, *(kw.value for kw in node.keywords)]:
                for sub in ast.walk(arg):  # linear_sum_assignment(cost.cpu().numpy())
                    if isinstance(sub, ast.Call):
                        self.consumed.add(id(sub))
            return
        for arg in [*node.args, *(kw.value for kw in node.keywords)]:
            if (
                isinstance(arg, ast.Call)
                and facts.last_name(arg.func) in _INT_WRAPPERS
                and arg.args
            ):
                arg = arg.args[0]
            if isinstance(arg, ast.Call) and facts.last_name(arg.func) == "tolist":
                self.consumed.add(id(arg))  # x.split(sizes.tolist()): an op asks for ints
        if isinstance(func, ast.Attribute) and not node.args and not node.keywords:
            if id(node) in self.consumed:
                return
            if func.attr == "numpy":
                self.report(
                    node,
                    f"`.numpy()` in `{where}` copies to the CPU and leaves autograd; keep the computation in torch",
                )
                return
            if func.attr == "tolist":
                self.report(
                    node,
                    f"`.tolist()` in `{where}` waits for the device and leaves autograd; keep the computation in torch",
                )
                return
        if id(node) in self.consumed:
            return
        if qualname is None or not qualname.startswith("numpy."):
            return
        if not qualname.startswith("numpy.random.") and self._only_numbers(node):
            return
        shown = self.ctx.text(func) or qualname
        self.report(
            node,
            f"numpy call `{shown}` in `{where}` runs on the CPU outside autograd; use the torch equivalent",
        )

    def _only_numbers(self, call: ast.Call) -> bool:
        args = [*call.args, *(kw.value for kw in call.keywords)]
        return all(self._is_number(a) for a in args)

    def _is_number(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Constant):
            return True
        if isinstance(node, ast.UnaryOp):
            return self._is_number(node.operand)
        if isinstance(node, ast.BinOp):
            return self._is_number(node.left) and self._is_number(node.right)
        if isinstance(node, ast.Tuple | ast.List):
            return all(self._is_number(e) for e in node.elts)
        if isinstance(node, ast.Subscript):
            return self._is_number(node.value)
        if isinstance(node, ast.Attribute):
            if node.attr in _SHAPE_ATTRS:
                return True
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                return self.ctx.attr_kind(node) not in (KIND_MODULE, KIND_TENSOR)
            return False
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in _SHAPE_METHODS:
                return True
            return isinstance(func, ast.Name) and func.id in ("len", "int", "float")
        if isinstance(node, ast.Name):
            if self.ctx.kind_of(self.ctx.binding(node.id)) == "number":
                return True
            return self._number_name(node.id)
        return False

    def _number_name(self, name: str) -> bool:
        """Whether every value ``name`` gets in the forward is a Python number (a shape,
        a length, a literal, arithmetic on them, through any number of names), or its
        parameter is annotated ``int``/``float``."""
        forward = self.stack[-1][0]
        assert isinstance(forward, ast.FunctionDef | ast.AsyncFunctionDef)
        for arg in forward.args.args + forward.args.kwonlyargs:
            if arg.arg == name:
                annotation = arg.annotation
                return isinstance(annotation, ast.Name) and annotation.id in _NUMBER_ANNOTATIONS
        values = self.assigned.get(id(forward))
        if values is None:
            values = {}
            for sub in ast.walk(forward):
                if isinstance(sub, ast.Assign):
                    matched: list[tuple[ast.expr, ast.expr]] = []
                    for target in sub.targets:
                        pairs(target, sub.value, matched, items=True)
                    for target, value in matched:
                        if isinstance(target, ast.Name):
                            values.setdefault(target.id, []).append(value)
                elif isinstance(sub, ast.AugAssign) and isinstance(sub.target, ast.Name):
                    values.setdefault(sub.target.id, []).append(sub.value)
            self.assigned[id(forward)] = values
        found = values.get(name)
        if not found:
            return self.ctx.semantic.global_number(name)  # d_k = 64 at module level
        lookup = single_values(values, name)
        return all(number_expr(value, lookup) or self._is_number(value) for value in found)


def _training_test(test: ast.expr) -> bool | None:
    """True for ``self.training``, False for ``not self.training``, else None."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _training_test(test.operand)
        return None if inner is None else not inner
    if isinstance(test, ast.Attribute) and test.attr == "training":
        return True
    return None
